package mailpittest

import (
	"os/exec"
	"strings"
	"testing"
)

// The version the tests expect is the one go.mod's tool block pins, which
// is what Binary and scripts/install-mailpit.sh build.
func TestVersionIsTheModulesTool(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	if got := strings.TrimSpace(string(out)); got != Version {
		t.Fatalf("go.mod pins %s %s, but mailpittest.Version is %s", module, got, Version)
	}
}
