//go:build k1s_payload

package payload

import _ "embed"

// The payload scripts/build-payload.sh built for linux/arm (`make build`, `make dist`).
var (
	//go:embed assets/arm/payload.tar.zst
	compressed []byte
	//go:embed assets/arm/payload.tar.zst.sha256
	compressedHash string
)
