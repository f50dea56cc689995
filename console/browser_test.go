package console

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The browser tests drive Debian's headless Chromium with chromedp. They
// skip, saying why, when no Chromium is installed, except with CI=true,
// where .ci/lib/chromium.sh installs it and a missing browser fails.

// EnvChromium names the Chromium binary; without it the tests look for
// chromium, chromium-browser, google-chrome and headless-shell on PATH.
const envChromium = "CHRONICLE_TEST_CHROMIUM"

// envScreenshots is the directory the browser tests save screenshots to;
// without it, a new temporary directory (logged).
const envScreenshots = "CHRONICLE_UI_SCREENSHOTS"

var browser struct {
	once     sync.Once
	ctx      context.Context // the browser's first tab; new tabs derive from it
	cancel   func()
	err      error
	shotsDir string
}

func chromiumPath() string {
	if p := os.Getenv(envChromium); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	os.Exit(code)
}

// startBrowser starts the shared headless Chromium once per test process.
func startBrowser(path string) {
	dataDir, err := os.MkdirTemp("", "chronicle-console-chromium-*")
	if err != nil {
		browser.err = err
		return
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(dataDir),
		chromedp.WindowSize(1280, 800),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// Start the browser now, so that a broken installation fails here.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		browser.err = fmt.Errorf("start chromium %s: %w", path, err)
	}
	browser.ctx = ctx
	browser.cancel = func() {
		cancel()
		cancelAlloc()
		os.RemoveAll(dataDir)
	}
}

// tabTimeout bounds a test's use of its tab.
const tabTimeout = 10 * time.Minute

// newTab opens a tab in the shared browser for t, closed when t ends. It
// skips t when no Chromium is found (fails under CI=true). The tab fails
// t if the page ever opens a JavaScript dialog: the console opens none,
// so one means injected script ran.
func newTab(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		msg := "no Chromium found (install Debian's chromium: apt-get install chromium, or set " + envChromium + ")"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; CI=true requires the browser tests to run")
		}
		skipOnce.Do(func() { fmt.Fprintln(os.Stderr, "console browser tests SKIPPED: "+msg) })
		t.Skip(msg)
	}
	browser.once.Do(func() { startBrowser(path) })
	if browser.err != nil {
		t.Fatal(browser.err)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx)
	// A safety net against a hung browser, not a performance bound: the
	// waits have their own 30s limits, and on a loaded machine (a load
	// average of 25 on 2 cores was seen) a test that visits 13 pages and
	// takes 26 full-page screenshots runs for minutes.
	ctx, cancelTimeout := context.WithTimeout(ctx, tabTimeout)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	var (
		mu     sync.Mutex
		opened []string
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			mu.Lock()
			opened = append(opened, fmt.Sprintf("%s %q", ev.Type, ev.Message))
			mu.Unlock()
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		<-done
		if len(opened) > 0 {
			t.Errorf("the page opened JavaScript dialogs %v: injected script ran", opened)
		}
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// do runs steps in the tab, failing t on error.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// run runs one action returning a value, failing t on error.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// text returns the text content of the first element matching css.
func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	return run(t, ctx, chromedp.TextContent(chromedp.CSS(css)))
}

// waitJS waits until the JavaScript expression is truthy.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

// viewports are the sizes screenshots are taken at.
var viewports = []struct {
	name          string
	width, height int64
	mobile        bool
}{
	{"laptop", 1280, 800, false},
	{"phone", 390, 844, true},
}

// screenshot saves the page at every viewport as <name>-<viewport>.png in
// the screenshot directory, and puts the laptop viewport back.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := screenshotDir(t)
	for _, vp := range viewports {
		opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
		if vp.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		do(t, ctx, chromedp.EmulateViewport(vp.width, vp.height, opts...), chromedp.Sleep(50*time.Millisecond))
		png := run(t, ctx, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(dir, name+"-"+vp.name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do(t, ctx, chromedp.EmulateViewport(1280, 800))
}

var (
	shotsOnce sync.Once
	// skipOnce prints the reason for skipping the browser tests once,
	// even without -v.
	skipOnce sync.Once
)

func screenshotDir(t *testing.T) string {
	shotsOnce.Do(func() {
		dir := os.Getenv(envScreenshots)
		if dir == "" {
			var err error
			if dir, err = os.MkdirTemp("", "chronicle-ui-screenshots-*"); err != nil {
				t.Fatal(err)
			}
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		browser.shotsDir = dir
		fmt.Fprintf(os.Stderr, "console browser tests: screenshots in %s\n", dir)
	})
	return browser.shotsDir
}
