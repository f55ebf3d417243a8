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

// ClientAuthArgs are the apiserver's flags for client certificates: the CA of its clients'
// certificates, and request-header authentication (who may proxy: AuthProxyUser, with a
// certificate of requestHeaderCA; the headers that carry the user). The extension servers k1s
// runs behind the aggregation proxy (metrics-server) get the same: given as flags, an
// extension server loads the CAs from their files before it serves, whereas from the
// extension-apiserver-authentication ConfigMap it would read them through an informer, and
// refuse the proxy's requests until that has synced.
func ClientAuthArgs(clientCA, requestHeaderCA string) map[string]string {
	return map[string]string{
		"client-ca-file":                     clientCA,
		"requestheader-allowed-names":        AuthProxyUser,
		"requestheader-client-ca-file":       requestHeaderCA,
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
	}
}
