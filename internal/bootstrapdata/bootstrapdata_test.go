package bootstrapdata

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	b := Bundle{Files: map[string][]byte{"tls/server-ca.key": []byte("-----BEGIN EC PRIVATE KEY-----\nsecret\n")}}
	sealed, err := Seal(b, "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("PRIVATE KEY")) || bytes.Contains(sealed, []byte("server-ca")) {
		t.Fatalf("sealed bundle shows its content: %q", sealed)
	}
	got, err := Open(sealed, "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(b) {
		t.Fatalf("opened %v, sealed %v", got, b)
	}
	if _, err := Open(sealed, "0123456789abcdeg"); !errors.Is(err, ErrWrongSecret) {
		t.Fatalf("another secret: %v, want ErrWrongSecret", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := Open(sealed, "0123456789abcdef"); !errors.Is(err, ErrWrongSecret) {
		t.Fatalf("altered bundle: %v, want ErrWrongSecret", err)
	}
	if _, err := Open([]byte("k1s-bootstrap-v1:short"), "x"); err == nil {
		t.Fatal("a truncated bundle opened")
	}
	again, _ := Seal(b, "0123456789abcdef")
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals of one bundle are equal: salt or nonce reused")
	}
}

func TestCollectWrite(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for name, data := range map[string]string{"tls/a.key": "a", "tls/retired/1.pub": "1", "tls/retired/2.pub": "2", "other": "x"} {
		path := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, err := Collect(src, []string{"tls/a.key", "tls/missing"}, []string{"tls/retired", "nodir"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tls/a.key", "tls/retired/1.pub", "tls/retired/2.pub"}; !equal(b.Names(), want) {
		t.Fatalf("collected %v, want %v", b.Names(), want)
	}
	if err := b.WriteTo(dst); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dst, "tls/retired/2.pub"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("written file: %v %v", info, err)
	}
	evil := Bundle{Files: map[string][]byte{"../escape": []byte("x")}}
	if err := evil.WriteTo(dst); err == nil {
		t.Fatal("a name outside the directory was written")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
