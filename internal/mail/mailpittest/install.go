package mailpittest

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// Version is the Mailpit release the tests are written against: the version
// go.mod's tool block pins (a test checks they agree), which Binary and
// scripts/install-mailpit.sh build.
const Version = "v1.27.11"

const module = "github.com/axllent/mailpit"

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of a mailpit executable, installing it on first
// use. The search order is:
//
//  1. $MAILPIT_BIN (an error if set but not executable),
//  2. mailpit on $PATH,
//  3. the cache scripts/install-mailpit.sh fills, kept between runs and
//     keyed by version: $CONSENTGRAPH_CACHE_DIR, else the user cache
//     directory's consentgraph (~/.cache/consentgraph), then
//     mailpit/Version/mailpit, if it was built from module version Version,
//  4. otherwise `go build github.com/axllent/mailpit` (a tool of this
//     module, so at the version go.mod pins) into that directory,
//     serialised with a file lock so parallel test binaries build it once.
//
// The result is cached for the life of the process.
func Binary() (string, error) {
	binOnce.Do(func() { binPath, binErr = findOrInstall() })
	return binPath, binErr
}

func exeName() string {
	if runtime.GOOS == "windows" {
		return "mailpit.exe"
	}
	return "mailpit"
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

// moduleVersion reports the module version a Go binary was built from, or
// "" when it cannot tell (e.g. release builds stripped of build info).
func moduleVersion(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil || bi.Main.Path != module {
		return ""
	}
	return bi.Main.Version
}

func findOrInstall() (string, error) {
	if p := os.Getenv("MAILPIT_BIN"); p != "" {
		if err := isExecutable(p); err != nil {
			return "", fmt.Errorf("MAILPIT_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p, nil
	}

	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	target := filepath.Join(dir, exeName())
	if isExecutable(target) == nil && moduleVersion(target) == Version {
		return target, nil
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	unlock, err := lockFile(filepath.Join(os.TempDir(), "consentgraph-mailpit-install.lock"))
	if err != nil {
		return "", fmt.Errorf("lock for mailpit install: %w", err)
	}
	defer unlock()
	// Another process may have installed it while we waited for the lock.
	if isExecutable(target) == nil && moduleVersion(target) == Version {
		return target, nil
	}
	if err := goBuild(target); err != nil {
		return "", err
	}
	if err := isExecutable(target); err != nil {
		return "", fmt.Errorf("go build reported success but: %w", err)
	}
	return target, nil
}

// cacheDir is where Binary and scripts/install-mailpit.sh keep the build
// of Version.
func cacheDir() (string, error) {
	base := os.Getenv("CONSENTGRAPH_CACHE_DIR")
	if base == "" {
		user, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("mailpit not found and no cache directory for it: %w", err)
		}
		base = filepath.Join(user, "consentgraph")
	}
	return filepath.Join(base, "mailpit", Version), nil
}

// goBuild builds Mailpit into target from this module (the test's working
// directory is inside it), sharing its compiled dependencies.
func goBuild(target string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", target, module)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	fmt.Fprintf(os.Stderr, "mailpittest: building %s into %s (run scripts/install-mailpit.sh to do this ahead of time)\n",
		module, target)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s failed after %s: %w\n%s", module,
			time.Since(start).Round(time.Second), err, out.String())
	}
	fmt.Fprintf(os.Stderr, "mailpittest: built mailpit in %s\n", time.Since(start).Round(time.Second))
	return nil
}
