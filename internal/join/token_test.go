package join

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"

	certutil "k8s.io/client-go/util/cert"
)

// testCA returns a fresh self-signed CA certificate.
func testCA(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "test-ca"}, key)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestTokenRoundTrip(t *testing.T) {
	ca := testCA(t)
	token, err := NewToken(ca)
	if err != nil {
		t.Fatal(err)
	}
	s := token.String()
	if !strings.HasPrefix(s, "K10"+CAHash(ca)+"::") || len(CAHash(ca)) != 64 {
		t.Fatalf("token %q does not carry the CA hash", s)
	}
	parsed, err := ParseToken(s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if parsed != token {
		t.Fatalf("parsed %+v, want %+v", parsed, token)
	}
	bare, err := ParseToken(token.Bootstrap())
	if err != nil || bare.CAHash != "" || bare.ID != token.ID || bare.Secret != token.Secret {
		t.Fatalf("bare token parsed as %+v, %v", bare, err)
	}
	if bare.String() != token.Bootstrap() {
		t.Fatalf("bare token prints as %q, want %q", bare.String(), token.Bootstrap())
	}
}

func TestNewTokenIsRandom(t *testing.T) {
	ca := testCA(t)
	a, errA := NewToken(ca)
	b, errB := NewToken(ca)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if a.ID == b.ID || a.Secret == b.Secret {
		t.Fatalf("two new tokens share their id or secret: %+v, %+v", a, b)
	}
}

func TestParseTokenNormalizesTheCAHash(t *testing.T) {
	hash := strings.Repeat("AB", 32)
	token, err := ParseToken("  K10" + hash + "::abcdef.0123456789abcdef \r\n")
	if err != nil {
		t.Fatal(err)
	}
	if token.CAHash != strings.ToLower(hash) || token.ID != "abcdef" || token.Secret != "0123456789abcdef" {
		t.Fatalf("parsed as %+v", token)
	}
}

func TestParseTokenRejectsMalformedWithoutLeakingIt(t *testing.T) {
	hash := strings.Repeat("a", 64)
	const secret = "0123456789abcdeX"
	for _, tc := range []struct{ token, want string }{
		{"", "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
		{"   \n", "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
		{"abcdef." + secret, "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
		{"abcde.0123456789abcdef", "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
		{"abcdef0123456789abcdef", "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
		{"ABCDEF.0123456789ABCDEF", "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
		// A lower-case prefix is not the full form: it is read (and rejected) as a bare token.
		{"k10" + hash + "::abcdef." + secret, "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
		{"K10" + hash + "abcdef." + secret, "expected K10<CA hash>::<id>.<secret> (read it from the server's node-token file)"},
		{"K10" + hash + ":abcdef." + secret, "expected K10<CA hash>::<id>.<secret> (read it from the server's node-token file)"},
		{"K10nothex::abcdef." + secret, "CA hash is not a hex SHA-256"},
		{"K10" + strings.Repeat("a", 62) + "::abcdef." + secret, "CA hash is not a hex SHA-256"},
		{"K10" + strings.Repeat("a", 66) + "::abcdef." + secret, "CA hash is not a hex SHA-256"},
		{"K10" + strings.Repeat("g", 64) + "::abcdef." + secret, "CA hash is not a hex SHA-256"},
		{"K10::abcdef." + secret, "CA hash is not a hex SHA-256"},
		{"K10" + hash + "::", "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
		{"K10" + hash + "::abcdef." + secret, "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
		{"K10" + hash + "::abcdef.0123456789abcdef::x", "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
		{"K10" + hash + "::K10" + hash + "::abcdef.0123456789abcdef", "expected K10<CA hash>::<id>.<secret> from the server's node-token file"},
	} {
		_, err := ParseToken(tc.token)
		if err == nil {
			t.Errorf("ParseToken(%q) accepted it", tc.token)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseToken(%q) = %v, want an error saying %q", tc.token, err, tc.want)
		}
		// The parser's error would quote the token: a secret must not reach a log.
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "0123456789abcdef") {
			t.Errorf("ParseToken(%q): the error quotes the secret: %v", tc.token, err)
		}
	}
}

func TestCAHashIsOfThePublicKey(t *testing.T) {
	a, b := testCA(t), testCA(t)
	if CAHash(a) == CAHash(b) {
		t.Fatal("two CAs with different keys have the same hash")
	}
	if h := CAHash(a); len(h) != 64 || strings.ToLower(h) != h {
		t.Fatalf("CAHash = %q, want 64 lower-case hex digits", h)
	}
}

func TestNodeNameTakenMessageNamesTheFix(t *testing.T) {
	msg := NodeNameTakenMessage("n1")
	for _, want := range []string{"node name n1 is already taken", "k1s kubectl delete node n1", "delete secret n1.node-identity.k1s", "--node-name"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
}

// A server token's authentication secret is derived, stable, a valid bootstrap secret, and
// not the sealing secret.
func TestServerAuth(t *testing.T) {
	token, err := ParseToken("K10" + strings.Repeat("ab", 32) + "::abcdef.0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	auth, err := token.ServerAuth()
	if err != nil {
		t.Fatal(err)
	}
	again, _ := token.ServerAuth()
	if auth != again || auth.ID != token.ID || auth.CAHash != token.CAHash || auth.Secret == token.Secret {
		t.Fatalf("server auth %+v of %+v", auth, token)
	}
	if _, err := ParseToken(auth.Bootstrap()); err != nil {
		t.Fatalf("derived %q is not a bootstrap token: %v", auth.Bootstrap(), err)
	}
}
