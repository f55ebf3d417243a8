package join

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	"k8s.io/cluster-bootstrap/util/tokens"
)

// tokenPrefix marks a full join token: K10<CA hash>::<id>.<secret>, k3s's token shape.
const tokenPrefix = "K10"

// Token is what a node needs to join: a bootstrap token (id and secret) and, in the full
// form, the hash of the cluster CA that lets the node authenticate the server before it sends
// the secret.
type Token struct {
	// CAHash is the hex SHA-256 of the cluster CA's SubjectPublicKeyInfo (kubeadm's
	// discovery hash); empty for a bare <id>.<secret> token.
	CAHash string
	ID     string
	Secret string
}

// NewToken returns a token with a random bootstrap token for the CA ca.
func NewToken(ca *x509.Certificate) (Token, error) {
	bootstrap, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return Token{}, fmt.Errorf("generating a join token: %w", err)
	}
	id, secret, err := tokens.ParseToken(bootstrap)
	if err != nil {
		return Token{}, err
	}
	return Token{CAHash: CAHash(ca), ID: id, Secret: secret}, nil
}

// ParseToken reads a full (K10<hash>::<id>.<secret>) or bare (<id>.<secret>) token.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	var t Token
	bootstrap := s
	if strings.HasPrefix(s, tokenPrefix) {
		hash, rest, ok := strings.Cut(strings.TrimPrefix(s, tokenPrefix), "::")
		if !ok {
			return t, fmt.Errorf("the join token is malformed: expected K10<CA hash>::<id>.<secret> (read it from the server's node-token file)")
		}
		raw, err := hex.DecodeString(hash)
		if err != nil || len(raw) != sha256.Size {
			return t, fmt.Errorf("the join token's CA hash is not a hex SHA-256: read the token again from the server's node-token file")
		}
		t.CAHash = strings.ToLower(hash)
		bootstrap = rest
	}
	id, secret, err := tokens.ParseToken(bootstrap)
	if err != nil {
		// The parser's own error quotes the token: it must not reach a log.
		return t, fmt.Errorf("the join token is malformed: expected K10<CA hash>::<id>.<secret> from the server's node-token file")
	}
	t.ID, t.Secret = id, secret
	return t, nil
}

// String is the token's full form when it has a CA hash.
func (t Token) String() string {
	if t.CAHash == "" {
		return t.Bootstrap()
	}
	return tokenPrefix + t.CAHash + "::" + t.Bootstrap()
}

// Bootstrap is the bootstrap token (<id>.<secret>) the apiserver authenticates.
func (t Token) Bootstrap() string { return bootstraputil.TokenFromIDAndSecret(t.ID, t.Secret) }

// CAHash is the hex SHA-256 of cert's SubjectPublicKeyInfo.
func CAHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// ServerAuth is the bootstrap token the cluster knows a server token by: the same id, and a
// secret derived from the server token's (HKDF-SHA256, one way). The cluster keeps only the
// derived secret (the token's Secret, in etcd and in every snapshot), while the server
// token's own secret seals the bootstrap data: neither etcd nor a snapshot holds what opens it.
func (t Token) ServerAuth() (Token, error) {
	key, err := hkdf.Key(sha256.New, []byte(t.Secret), nil, "k1s server token: bootstrap authentication", 16)
	if err != nil {
		return Token{}, err
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	secret := make([]byte, len(key))
	for i, b := range key {
		secret[i] = alphabet[int(b)%len(alphabet)]
	}
	return Token{CAHash: t.CAHash, ID: t.ID, Secret: string(secret)}, nil
}
