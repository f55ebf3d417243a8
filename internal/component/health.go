package component

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// HTTPReady returns a readiness check that expects 200 from a local health endpoint.
// insecureTLS is for the secure ports of upstream components, which serve a certificate they
// made for themselves in memory: the probe sends no credentials and only reads a health flag
// on this host.
func HTTPReady(url string, insecureTLS bool) func(ctx context.Context) error {
	transport := &http.Transport{}
	if insecureTLS {
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see above
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: transport}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%s: not serving yet", url)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, FailedChecks(body, fmt.Errorf("HTTP %d", resp.StatusCode)))
		}
		return nil
	}
}

// FailedChecks picks the failing checks out of a verbose Kubernetes health report ("[-]name
// failed"), or returns err's text when the report names none.
func FailedChecks(body []byte, err error) string {
	var failed []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "[-]") {
			failed = append(failed, strings.TrimPrefix(strings.Fields(line)[0], "[-]"))
		}
	}
	if len(failed) == 0 {
		return err.Error()
	}
	return "not yet done: " + strings.Join(failed, ", ")
}
