package pki

// TLSCipherSuites are the only TLS 1.2 suites the apiserver and kubelets accept: ECDHE key
// exchange with AEAD ciphers (TLS 1.3's suites are fixed by Go and all fit that).
var TLSCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

// TLSMinVersion is the lowest TLS version the apiserver and kubelets speak.
const TLSMinVersion = "VersionTLS12"
