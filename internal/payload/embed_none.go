//go:build !k1s_payload

package payload

// Without the k1s_payload tag (plain `go build`, unit tests) the binary carries no payload;
// Extract says how to get one.
var (
	compressed     []byte
	compressedHash string
)
