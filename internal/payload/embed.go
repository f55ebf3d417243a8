//go:build k1s_payload

package payload

import _ "embed"

// The payload built by scripts/build-payload.sh; `make build` builds it and sets the tag.
var (
	//go:embed assets/payload.tar.zst
	compressed []byte
	//go:embed assets/payload.tar.zst.sha256
	compressedHash string
)
