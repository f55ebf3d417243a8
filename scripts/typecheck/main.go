// Command typecheck type-checks packages and all their dependencies from source for the
// GOOS/GOARCH in its environment, without compiling them. It is built for the host, and
// the environment it runs in names the target:
//
//	go build -o bin/typecheck ./scripts/typecheck
//	GOARCH=arm GOARM=7 bin/typecheck -tags providerless ./...
//
// `make test` builds and runs one cross-built release in full; for the other it runs this,
// which finds in half a minute what breaks only there (a constant that overflows a 32-bit
// int, a file missing for the architecture), where compiling Kubernetes for it once more
// would take a quarter of an hour on a 2-core machine. `make dist` still builds every release.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/tools/go/packages"
)

func main() {
	tags := flag.String("tags", "", "build tags, as go build's -tags")
	flag.Parse()
	if err := typecheck(*tags, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "typecheck:", err)
		os.Exit(1)
	}
}

func typecheck(tags string, patterns []string) error {
	if len(patterns) == 0 {
		return fmt.Errorf("no packages given (usage: typecheck [-tags T] PACKAGES)")
	}
	cfg := &packages.Config{
		// Syntax and types for every dependency too: from source, never the compiler's
		// export data, which would mean compiling them.
		Mode:       packages.LoadAllSyntax,
		BuildFlags: []string{"-tags", tags},
		Tests:      false,
	}
	pkgs, err := packages.Load(cfg, patterns...)
	if err != nil {
		return err
	}
	errs := packages.PrintErrors(pkgs)
	goos, goarch := os.Getenv("GOOS"), os.Getenv("GOARCH")
	if goos == "" {
		goos = runtime.GOOS
	}
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	if errs > 0 {
		return fmt.Errorf("%d errors for %s/%s (above)", errs, goos, goarch)
	}
	n := 0
	packages.Visit(pkgs, nil, func(*packages.Package) { n++ })
	fmt.Printf("typecheck: %d packages type-check for %s/%s\n", n, goos, goarch)
	return nil
}
