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

// RequestHeaderArgs are the request-header authentication flags of the apiserver and of the
// extension servers k1s runs behind its aggregation proxy (metrics-server): who may proxy
// (AuthProxyUser, with a certificate of the CA in caFile) and the headers that carry the user.
// Given as flags, an extension server loads the CA from the file before it serves; without
// them it reads the extension-apiserver-authentication ConfigMap through an informer, and
// refuses the proxy's requests until that has synced.
func RequestHeaderArgs(caFile string) map[string]string {
	return map[string]string{
		"requestheader-allowed-names":        AuthProxyUser,
		"requestheader-client-ca-file":       caFile,
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
	}
}
