package pki

import (
	"strings"
	"testing"
)

func TestJoinTokenRoundTrip(t *testing.T) {
	ca, err := EnsureCA(t.TempDir(), "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	token, err := NewJoinToken(ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	s := token.String()
	if !strings.HasPrefix(s, "K10"+CAHash(ca.Cert)+"::") || len(CAHash(ca.Cert)) != 64 {
		t.Fatalf("token %q does not carry the CA hash", s)
	}
	parsed, err := ParseJoinToken(s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if parsed != token {
		t.Fatalf("parsed %+v, want %+v", parsed, token)
	}
	bare, err := ParseJoinToken(token.Bootstrap())
	if err != nil || bare.CAHash != "" || bare.ID != token.ID || bare.Secret != token.Secret {
		t.Fatalf("bare token parsed as %+v, %v", bare, err)
	}
}

func TestParseJoinTokenRejectsMalformedWithoutLeakingIt(t *testing.T) {
	for _, bad := range []string{
		"",
		"abcdef.0123456789abcdeX",
		"K10nothex::abcdef.0123456789abcdef",
		"K10" + strings.Repeat("a", 64) + "abcdef.0123456789abcdef",
		"K10" + strings.Repeat("a", 62) + "::abcdef.0123456789abcdef",
		"K10" + strings.Repeat("a", 64) + "::abcdef.secretsecretsecre",
	} {
		_, err := ParseJoinToken(bad)
		if err == nil {
			t.Errorf("ParseJoinToken(%q) accepted it", bad)
			continue
		}
		if strings.Contains(err.Error(), "secret") && strings.Contains(err.Error(), "secretsecret") {
			t.Errorf("error quotes the token: %v", err)
		}
	}
}
