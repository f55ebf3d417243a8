package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/pki"
)

// How often the running server looks for certificates to renew, and for a rotation that
// `k1s certificate rotate` asked for.
const (
	renewalInterval     = 12 * time.Hour
	rotateCheckInterval = 5 * time.Second
)

// RequestCertificateRotation adds services to the pending rotation request (layout's
// RotateRequest): the server issues their certificates again, at once if it runs, else at its
// next start.
func RequestCertificateRotation(path string, services []string) error {
	for _, s := range services {
		if _, ok := pki.Services[s]; !ok {
			return fmt.Errorf("--service %q: choose from %s (the kubelet renews its own certificates)", s, strings.Join(ServiceNames(), ", "))
		}
	}
	pending, err := readRotateRequest(path)
	if err != nil {
		return err
	}
	for _, s := range services {
		if !slices.Contains(pending, s) {
			pending = append(pending, s)
		}
	}
	data, err := json.Marshal(pending)
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(path, data, 0o600)
}

// ServiceNames are the services whose certificates can be rotated, sorted.
func ServiceNames() []string {
	names := make([]string, 0, len(pki.Services))
	for name := range pki.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func readRotateRequest(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var services []string
	if err := json.Unmarshal(data, &services); err != nil {
		return nil, fmt.Errorf("%s is malformed (%w): remove it and run 'k1s certificate rotate' again", path, err)
	}
	return services, nil
}

// ensurePKI creates or renews the control plane's certificates, rotating those a pending
// request names, and removes the request once done. A running server (atStart false) leaves a
// service-account key rotation for its next start: the apiserver reads its signing key only
// when it starts, and the old key's retention counts from the moment it stops signing.
func (s *Server) ensurePKI(atStart bool) (*pki.ControlPlane, error) {
	request := s.cfg.files.RotateRequest()
	rotate, err := readRotateRequest(request)
	if err != nil {
		return nil, err
	}
	now, later := splitRotation(rotate, atStart)
	spec := s.pkiSpec
	spec.Rotate = now
	cp, err := pki.EnsureControlPlane(spec)
	if err != nil {
		return nil, err
	}
	switch {
	case len(later) > 0 && len(now) > 0:
		data, err := json.Marshal(later)
		if err != nil {
			return nil, err
		}
		if err := fileutil.WriteAtomic(request, data, 0o600); err != nil {
			return nil, err
		}
	case len(later) == 0 && len(rotate) > 0:
		if err := os.Remove(request); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return cp, nil
}

// splitRotation parts a rotation request into what is rotated now and what waits for the
// next start.
func splitRotation(rotate []string, atStart bool) (now, later []string) {
	for _, service := range rotate {
		if service == pki.ServiceAccountService && !atStart {
			later = append(later, service)
		} else {
			now = append(now, service)
		}
	}
	return now, later
}

// RotationPending reports whether the request at path asks a running server for something
// (a service-account key rotation waits for the next start).
func RotationPending(path string) bool {
	rotate, err := readRotateRequest(path)
	if err != nil {
		return true // reported by the renewal
	}
	now, _ := splitRotation(rotate, false)
	return len(now) > 0
}

// newCertificateRenewal returns the component that keeps the control plane's certificates
// valid while k1s runs: every renewalInterval it issues again those that expire within
// pki.RenewBefore (the components read their certificates from the files and pick the new
// ones up), rotates at once what `k1s certificate rotate` asks for, and warns about every
// certificate, CAs included, that will expire within pki.RenewBefore.
func (s *Server) newCertificateRenewal(admin *kubeclient.Lazy) component.Component {
	run := func(ctx context.Context) error {
		s.warnExpiring()
		lastRenewal := time.Now()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(rotateCheckInterval):
			}
			if !RotationPending(s.cfg.files.RotateRequest()) && !s.adminPending && time.Since(lastRenewal) < renewalInterval {
				continue
			}
			lastRenewal = time.Now()
			if err := s.renewCertificates(ctx, admin); err != nil {
				retry := renewalInterval
				if s.adminPending {
					retry = rotateCheckInterval
				}
				s.cfg.Log.Errorf("renewing certificates: %v (retrying in %s)", err, retry)
			}
			s.warnExpiring()
		}
	}
	return component.NewFunc("certificate renewal", run, func(context.Context) error { return nil })
}

func (s *Server) renewCertificates(ctx context.Context, admin *kubeclient.Lazy) error {
	cp, err := s.ensurePKI(false)
	if err != nil {
		return err
	}
	if len(cp.Renewed) > 0 {
		s.PKI = cp
		s.cfg.Log.Infof("renewed certificates: %s", strings.Join(cp.Renewed, ", "))
	}
	// The admin kubeconfig carries its certificate; the others read theirs from the files.
	// Until it and its binding are done, every round tries again: the request is gone.
	if slices.Contains(cp.Renewed, "client-admin") {
		s.adminPending = true
	}
	if !s.adminPending {
		return nil
	}
	client, err := admin.Client()
	if err != nil {
		return err
	}
	if err := s.grantAdmin(ctx, client); err != nil {
		return err
	}
	if err := s.writeAdminKubeconfig(); err != nil {
		return err
	}
	s.adminPending = false
	return nil
}

func (s *Server) warnExpiring() {
	expiring, err := pki.ExpiringWithin(s.cfg.files.TLSDir(), pki.RenewBefore)
	if err != nil {
		s.cfg.Log.Warnf("checking certificate expiry: %v", err)
	}
	for _, e := range expiring {
		s.cfg.Log.Warnf("certificate %s (%s) expires on %s, in %d days: k1s renews leaf certificates itself, but not CAs; plan a CA rotation", e.File, e.Subject, e.NotAfter.Format(time.DateOnly), int(time.Until(e.NotAfter).Hours()/24))
	}
}
