//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// TestReadme runs every sh block of README.md in order, as a reader pastes
// them: one bash (with set -euo pipefail) for the steps, so variables carry
// from block to block, in the repository's directory. A block that must not
// run as a step says so in an HTML comment on the line just above its fence:
//
//	<!-- readme-test: skip (why) -->       not run (e.g. the test command itself)
//	<!-- readme-test: background NAME -->  a long-running process, as in another
//	                                       terminal: started, waited for until it
//	                                       answers, and stopped like Ctrl-C (SIGINT to
//	                                       its process group) when a later block
//	                                       starts NAME again, or at the end
//
// NAME is "server" (ready when /readyz answers 200) or "mailpit" (ready when
// its /readyz does). The only changes made to what a reader runs: the
// README's ports (8080, 1025, 8025) are replaced with free ones, and server
// processes get CONSENTGRAPH_ADDR (the free port) and CONSENTGRAPH_DATA_DIR
// (a fresh temporary directory instead of ./data).
//
// A block fails the test when it exits non-zero or its output holds a
// GraphQL error ("errors":), so the README's curl calls use --fail-with-body
// and capture values with jq -e.
func TestReadme(t *testing.T) {
	blocks, err := readmeBlocks("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) < 4 {
		t.Fatalf("found %d sh blocks in README.md; the parser is broken or the README lost its examples", len(blocks))
	}
	for _, tool := range []string{"bash", "curl", "jq", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's examples need %s: %v", tool, err)
		}
	}

	ports := map[string]string{}
	for _, p := range []string{"8080", "1025", "8025"} {
		ports[p] = freePort(t)
	}
	serverAddr := "127.0.0.1:" + ports["8080"]
	dataDir := filepath.Join(t.TempDir(), "data")
	rewrite := func(b readmeBlock) string {
		text := b.text
		for from, to := range ports {
			text = strings.ReplaceAll(text, "127.0.0.1:"+from, "127.0.0.1:"+to)
		}
		if strings.Contains(text, ":8080") {
			t.Fatalf("README line %d names the server's address in a form this test does not rewrite (use 127.0.0.1:8080)", b.line)
		}
		return text
	}
	readyURL := map[string]string{
		"server":  "http://" + serverAddr + "/readyz",
		"mailpit": "http://127.0.0.1:" + ports["8025"] + "/readyz",
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bg := map[string]*background{}
	defer func() {
		for _, p := range bg {
			p.stop(t)
		}
	}()
	t.Cleanup(func() {
		// The files the examples write (see .gitignore).
		for _, f := range []string{"cookies.txt", "consentgraph-export.json", "checkpoint.jws"} {
			_ = os.Remove(f)
		}
	})

	var sh *stepShell
	ran := 0
	for _, b := range blocks {
		switch {
		case b.marker == "":
			if sh == nil {
				sh = startShell(ctx, t)
			}
			out, err := sh.run(rewrite(b), 3*time.Minute)
			if err != nil {
				t.Fatalf("README block at line %d: %v\noutput:\n%s", b.line, err, out)
			}
			t.Logf("README block at line %d:\n%s", b.line, out)
			if strings.Contains(out, `"errors":`) {
				t.Fatalf("README block at line %d answered a GraphQL error:\n%s", b.line, out)
			}
			ran++
		case strings.HasPrefix(b.marker, "skip"):
		case strings.HasPrefix(b.marker, "background "):
			name, _, _ := strings.Cut(strings.TrimPrefix(b.marker, "background "), " ")
			url, ok := readyURL[name]
			if !ok {
				t.Fatalf("README line %d: unknown background process %q (known: server, mailpit)", b.line, name)
			}
			if old := bg[name]; old != nil {
				old.stop(t) // Ctrl-C in its terminal
			}
			env := []string{}
			if name == "server" {
				env = append(env, "CONSENTGRAPH_ADDR="+serverAddr, "CONSENTGRAPH_DATA_DIR="+dataDir)
			}
			bg[name] = startBackground(t, b.line, rewrite(b), env, url)
		default:
			t.Fatalf("README line %d: unknown readme-test marker %q (skip, or background NAME)", b.line, b.marker)
		}
	}
	if ran == 0 {
		t.Fatal("no README block ran as a step")
	}
	if sh != nil {
		sh.close()
	}
}

type readmeBlock struct {
	line   int    // of the opening fence
	marker string // after "readme-test:" in the comment just above, or ""
	text   string
}

var markerRE = regexp.MustCompile(`^<!--\s*readme-test:\s*(.*?)\s*-->$`)

// readmeBlocks returns the ```sh blocks of a Markdown file in order.
func readmeBlocks(path string) ([]readmeBlock, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(raw), "\n")
	var blocks []readmeBlock
	for i := 0; i < len(lines); i++ {
		fence := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(fence, "```") {
			continue
		}
		lang := strings.TrimPrefix(fence, "```")
		start := i
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
		}
		if i == len(lines) {
			return nil, fmt.Errorf("%s:%d: the code block is not closed", path, start+1)
		}
		if lang != "sh" && lang != "bash" && lang != "shell" {
			continue
		}
		b := readmeBlock{line: start + 1, text: strings.Join(lines[start+1:i], "\n") + "\n"}
		if j := start - 1; j >= 0 {
			if m := markerRE.FindStringSubmatch(strings.TrimSpace(lines[j])); m != nil {
				b.marker = m[1]
			}
		}
		blocks = append(blocks, b)
	}
	return blocks, nil
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// stepShell is the reader's terminal: one bash reading the blocks from a
// pipe, so shell variables and functions carry over.
type stepShell struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	seq   int
	dir   string
}

func startShell(ctx context.Context, t *testing.T) *stepShell {
	t.Helper()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &stepShell{cmd: cmd, in: in, lines: make(chan string, 1024), dir: t.TempDir()}
	go func() {
		_ = cmd.Wait()
		pw.Close()
	}()
	go func() {
		r := bufio.NewReader(pr)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				s.lines <- line
			}
			if err != nil {
				close(s.lines)
				return
			}
		}
	}()
	if _, err := io.WriteString(in, "set -euo pipefail\n"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return s
}

// run feeds one block to the shell and returns its output once the block
// is done. The limit only keeps a block that never ends (a server started
// without a marker) from hanging the test run.
func (s *stepShell) run(block string, limit time.Duration) (string, error) {
	s.seq++
	done := fmt.Sprintf("readme-test: block %d done", s.seq)
	// Sourced from a file with stdin from /dev/null, so that no command of
	// the block can read the blocks after it from the shell's input.
	file := filepath.Join(s.dir, fmt.Sprintf("block%d.sh", s.seq))
	if err := os.WriteFile(file, []byte(block), 0o600); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(s.in, "source %q </dev/null\nprintf '\\n%%s\\n' %q\n", file, done); err != nil {
		return "", fmt.Errorf("the shell has ended: %w", err)
	}
	var out strings.Builder
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return out.String(), errors.New("the shell exited: a command failed (set -euo pipefail)")
			}
			if strings.TrimSpace(line) == done {
				return out.String(), nil
			}
			out.WriteString(line)
		case <-timer.C:
			return out.String(), fmt.Errorf("did not finish in %v (a block that starts a server needs a readme-test: background marker)", limit)
		}
	}
}

func (s *stepShell) close() { _ = s.in.Close() }

// background is a process of a "background" block.
type background struct {
	line int
	cmd  *exec.Cmd
	out  *apptest.LockedBuffer
	done chan struct{}
}

func startBackground(t *testing.T, line int, block string, env []string, readyURL string) *background {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc", "-euo", "pipefail", "-c", block)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), env...)
	p := &background{line: line, cmd: cmd, out: &apptest.LockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	// Generous: on a fresh machine `go run .` links the server first.
	deadline := time.Now().Add(4 * time.Minute)
	for {
		select {
		case <-p.done:
			t.Fatalf("README block at line %d exited before it was ready (%v):\n%s", line, cmd.ProcessState, p.out)
		default:
		}
		if res, err := http.Get(readyURL); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			p.stop(t)
			t.Fatalf("README block at line %d: %s did not answer 200 within 4 minutes:\n%s", line, readyURL, p.out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop is Ctrl-C in the process's terminal: SIGINT to its process group,
// then waiting for it to end (SIGKILL if it will not).
func (p *background) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("README block at line %d did not stop within 30 s of Ctrl-C (SIGINT):\n%s", p.line, p.out)
	}
}
