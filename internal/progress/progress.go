// Package progress shows how far a long command (seed, copy-store) has
// come: a progress bar on a terminal, a line every tenth of the way
// otherwise (logs, CI), so neither floods the output.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Bar tracks one task of a known size. It is safe for concurrent use.
type Bar struct {
	mu       sync.Mutex
	bar      *progressbar.ProgressBar // nil when w is not a terminal
	w        io.Writer
	what     string
	total    int64
	done     int64
	reported int64 // tenths already printed (no terminal)
	start    time.Time
}

// New starts a bar for total units of what ("users", "records") on w.
func New(w io.Writer, total int64, what string) *Bar {
	b := &Bar{w: w, what: what, total: total, start: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		b.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString(what),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	return b
}

// Set records that done units are finished.
func (b *Bar) Set(done int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if done <= b.done {
		return
	}
	b.done = done
	if b.bar != nil {
		_ = b.bar.Set64(done)
		return
	}
	if b.total <= 0 {
		return
	}
	if tenth := done * 10 / b.total; tenth > b.reported {
		b.reported = tenth
		fmt.Fprintf(b.w, "%s: %d of %d (%d%%) after %s\n", b.what, done, b.total, tenth*10, time.Since(b.start).Round(time.Second))
	}
}

// Add records n more finished units.
func (b *Bar) Add(n int64) {
	b.mu.Lock()
	done := b.done + n
	b.mu.Unlock()
	b.Set(done)
}

// Finish ends the bar.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		_ = b.bar.Finish()
	}
}
