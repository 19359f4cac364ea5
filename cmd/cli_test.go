package cmd

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func runCLI(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(args, func(string) string { return "" }, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestHelpListsEveryCommand(t *testing.T) {
	out, err := runCLI("-h")
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, c := range commands {
		if !strings.Contains(out, c.name) || !strings.Contains(out, c.summary) {
			t.Errorf("-h does not list %s with its summary:\n%s", c.name, out)
		}
	}
	if !strings.Contains(out, "-data-dir") {
		t.Errorf("-h does not list the server's flags:\n%s", out)
	}
}

// Every command answers -h with its own usage, not the server's alone.
func TestEveryCommandHasItsOwnHelp(t *testing.T) {
	own := map[string][]string{
		"copy-store":        {"-to"},
		"verify-log":        {"-checkpoint", "-url"},
		"rotate-master-key": {"rotate-master-key", "CONSENTGRAPH_PREVIOUS_MASTER_KEYS"},
		"seed":              {"-users", "-seed"},
		"loadtest":          {"-clients", "-mix"},
	}
	if len(own) != len(commands) {
		t.Fatalf("this test knows %d commands, there are %d: add the new one", len(own), len(commands))
	}
	for _, c := range commands {
		out, err := runCLI(c.name, "-h")
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s -h: %v\n%s", c.name, err, out)
		}
		for _, want := range own[c.name] {
			if !strings.Contains(out, want) {
				t.Errorf("%s -h does not mention %s:\n%s", c.name, want, out)
			}
		}
	}
}

func TestUnknownCommandsAndFlagsSayWhatExists(t *testing.T) {
	out, err := runCLI("frobnicate")
	if err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %v", err)
	}
	for _, c := range commands {
		if !strings.Contains(err.Error(), c.name) {
			t.Errorf("the error does not name %s: %v", c.name, err)
		}
	}
	out, err = runCLI("--no-such-flag")
	if err == nil || !strings.Contains(out, "-no-such-flag") || !strings.Contains(out, "-data-dir") {
		t.Errorf("unknown flag: %v\n%s", err, out)
	}
	out, err = runCLI("seed", "--no-such-flag")
	if err == nil || !strings.Contains(out, "-no-such-flag") {
		t.Errorf("seed with an unknown flag: %v\n%s", err, out)
	}
}
