package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

func projectionsCommand() command {
	var (
		dbURL    string
		jsonOut  bool
		noWait   bool
		projName string
		status   string
		limit    int
		afterID  int64
	)
	return command{
		name:     "projections",
		synopsis: "status [NAME] | rebuild NAME [--no-wait] | dead-letters list|retry ID...|skip ID...  [--database-url URL]",
		summary:  "show projections' checkpoints and lag, rebuild one, manage dead letters",
		help: `Subcommands:

  status [NAME]          every partition of every projection (or of NAME): its
                         checkpoint, the head, the lag in events and in time
                         (age of the oldest event not handled yet), its holder,
                         its parked events and its state
  rebuild NAME           request a rebuild of NAME and follow it: the runner
                         holding each partition (in your service) calls the
                         projection's reset hook, moves the checkpoint back to
                         the start and replays every event; a progress bar
                         shows the replay. The request is stored: if no runner
                         runs NAME, it waits for one (Ctrl-C stops waiting, not
                         the rebuild). --no-wait returns after the request.
  dead-letters list      the parked dead letters (by default only those: the
                         events waiting for an operator); --state retry,
                         resolved, skipped or all lists others; --projection,
                         --limit, --after for paging, --json
  dead-letters retry ID  ask the holder of the event's partition to handle it
                         again (resolved on success, parked again on failure)
                         (a skipped dead letter cannot be retried)
  dead-letters skip ID   give up on a parked event

See docs/projections.md.`,
		flags: func(fs *flag.FlagSet) {
			databaseFlag(fs, &dbURL)
			fs.BoolVar(&jsonOut, "json", false, "print JSON (status, dead-letters list)")
			fs.BoolVar(&noWait, "no-wait", false, "rebuild: return once the rebuild is requested")
			fs.StringVar(&projName, "projection", "", "dead-letters list: only the dead letters of projection `name`")
			fs.StringVar(&status, "state", string(projectionstore.DeadLetterParked), "dead-letters list: the dead letters in `state` parked, retry, resolved, skipped or all")
			fs.StringVar(&status, "status", string(projectionstore.DeadLetterParked), "dead-letters list: the same as --state (deprecated)")
			fs.IntVar(&limit, "limit", 0, "dead-letters list: at most `n` dead letters (default 100)")
			fs.Int64Var(&afterID, "after", 0, "dead-letters list: the dead letters with an ID above `id`")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) == 0 {
				return usagef("missing subcommand")
			}
			var run func(ctx context.Context, pc *projContext) error
			switch sub := args[0]; sub {
			case "status":
				if len(args) > 2 {
					return usagef("projections status takes at most one projection name")
				}
				name := ""
				if len(args) == 2 {
					name = args[1]
				}
				run = func(ctx context.Context, pc *projContext) error {
					return projPrintStatus(ctx, env.Stdout, pc, name, jsonOut)
				}
			case "rebuild":
				if len(args) != 2 {
					return usagef("projections rebuild takes one projection name")
				}
				name := args[1]
				run = func(ctx context.Context, pc *projContext) error { return projRebuild(ctx, env, pc, name, !noWait) }
			case "dead-letters":
				if len(args) < 2 {
					return usagef("missing dead-letters subcommand: list, retry or skip")
				}
				switch args[1] {
				case "list":
					if len(args) != 2 {
						return usagef("dead-letters list takes no arguments; filter with --projection and --state")
					}
					if limit < 0 || afterID < 0 {
						return usagef("--limit and --after must not be negative")
					}
					st := projectionstore.DeadLetterStatus(status)
					if status == "all" {
						st = ""
					} else if !st.Valid() {
						return usagef("--state %q is not parked, retry, resolved, skipped or all", status)
					}
					filter := projectionstore.DeadLetterFilter{Projection: projName, Status: st, Limit: limit, AfterID: afterID}
					run = func(ctx context.Context, pc *projContext) error {
						return projListDeadLetters(ctx, env.Stdout, pc, filter, jsonOut)
					}
				case "retry", "skip":
					op := args[1]
					if len(args) < 3 {
						return usagef("dead-letters %s takes one or more dead letter IDs", op)
					}
					ids := make([]int64, 0, len(args)-2)
					for _, a := range args[2:] {
						id, err := strconv.ParseInt(a, 10, 64)
						if err != nil || id <= 0 {
							return usagef("%q is not a dead letter ID", a)
						}
						ids = append(ids, id)
					}
					run = func(ctx context.Context, pc *projContext) error { return projSettle(ctx, env.Stdout, pc, op, ids) }
				default:
					return usagef("unknown dead-letters subcommand %q", args[1])
				}
			default:
				return usagef("unknown subcommand %q", sub)
			}
			u, err := databaseURL(env, dbURL)
			if err != nil {
				return err
			}
			return redact(withProjections(ctx, u, run), u)
		},
	}
}

// projContext is what the projections subcommands work on.
type projContext struct {
	store *postgres.Store
	ps    *postgres.ProjectionStore
}

// withProjections opens a pool, a poll-only event store and a projection
// store, checks the connection and runs fn.
func withProjections(ctx context.Context, databaseURL string, fn func(context.Context, *projContext) error) error {
	pool, err := openPool(ctx, databaseURL, 2, 10*time.Second)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{PollOnly: true})
	if err != nil {
		return err
	}
	defer store.Close()
	ps, err := postgres.NewProjectionStore(pool, nil)
	if err != nil {
		return err
	}
	return fn(ctx, &projContext{store: store, ps: ps})
}

// projStatusJSON is the --json form of a partition's status.
type projStatusJSON struct {
	Projection       string    `json:"projection"`
	Partition        int       `json:"partition"`
	Partitions       int       `json:"partitions"`
	Checkpoint       string    `json:"checkpoint"`
	UpdatedAt        time.Time `json:"updated_at"`
	Head             string    `json:"head"`
	LagEvents        int64     `json:"lag_events"`
	LagSeconds       float64   `json:"lag_seconds"`
	Holder           string    `json:"holder,omitempty"`
	Parked           int       `json:"parked"`
	RebuildRequested bool      `json:"rebuild_requested"`
	Error            string    `json:"error,omitempty"`
	State            string    `json:"state"`
}

// projState summarises a partition's state in a word or two.
func projState(st projection.Status) string {
	switch {
	case st.RebuildRequested:
		return "rebuild requested"
	case st.Error != "":
		return "stopped"
	case st.Holder == "":
		return "no holder"
	case st.LagEvents > 0:
		return "catching up"
	default:
		return "live"
	}
}

func projPrintStatus(ctx context.Context, w io.Writer, pc *projContext, name string, jsonOut bool) error {
	if name != "" {
		if err := projection.ValidateName(name); err != nil {
			return err
		}
	}
	sts, err := projection.Statuses(ctx, pc.store, pc.ps, name)
	if err != nil {
		return err
	}
	if name != "" && len(sts) == 0 {
		return fmt.Errorf("%w: %q has no checkpoints (has a runner ever run it?)", projection.ErrUnknownProjection, name)
	}
	if jsonOut {
		out := make([]projStatusJSON, len(sts))
		for i, st := range sts {
			out[i] = projStatusJSON{
				Projection: st.Projection, Partition: st.Partition, Partitions: st.Partitions,
				Checkpoint: st.Position.String(), UpdatedAt: st.UpdatedAt, Head: st.Head.String(),
				LagEvents: st.LagEvents, LagSeconds: st.LagTime.Seconds(), Holder: st.Holder, Parked: st.Parked,
				RebuildRequested: st.RebuildRequested, Error: st.Error, State: projState(st),
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(sts) == 0 {
		fmt.Fprintln(w, "no projections: no runner has run one on this database yet")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tPARTITION\tCHECKPOINT\tHEAD\tLAG\tLAG TIME\tHOLDER\tPARKED\tSTATE")
	for _, st := range sts {
		holder := st.Holder
		if holder == "" {
			holder = "-"
		}
		state := projState(st)
		if st.Error != "" {
			state += ": " + projShorten(st.Error, 100)
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", st.Projection, st.Partition, st.Partitions,
			st.Position, st.Head, st.LagEvents, st.LagTime.Round(time.Millisecond), holder, st.Parked, state)
	}
	return tw.Flush()
}

// projShorten cuts s to about n bytes on one line.
func projShorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n] + "…"
}

func projRebuild(ctx context.Context, env *Env, pc *projContext, name string, wait bool) error {
	if err := pc.ps.RequestRebuild(ctx, name, 0); err != nil {
		if errors.Is(err, projection.ErrUnknownProjection) {
			return fmt.Errorf("%w (has a runner ever run it?)", err)
		}
		return err
	}
	fmt.Fprintf(env.Stdout, "rebuild of %s requested\n", name)
	if !wait {
		return nil
	}
	bar := newProjProgress(env.Stderr, name)
	err := projection.WaitRebuild(ctx, pc.store, pc.ps, name, bar.update)
	bar.finish()
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("stopped waiting; the rebuild of %s goes on (follow it with chronicle projections status %s)", name, name)
	case err != nil:
		return err
	}
	fmt.Fprintf(env.Stdout, "rebuilt %s: replayed up to %s\n", name, bar.last.Head)
	return nil
}

// projProgress draws a rebuild's progress: a bar redrawn in place on a
// terminal, a line every tenth otherwise.
type projProgress struct {
	w        io.Writer
	name     string
	terminal bool
	last     projection.Progress
	waiting  bool // "waiting for a runner" printed
	step     int  // last tenth printed (not a terminal)
	drawn    bool
}

func newProjProgress(w io.Writer, name string) *projProgress {
	return &projProgress{w: w, name: name, terminal: isTerminal(w), step: -1}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *projProgress) update(pr projection.Progress) {
	p.last = pr
	if !pr.Started {
		if !p.waiting {
			p.waiting = true
			fmt.Fprintf(p.w, "waiting for the runner(s) holding %s to start the rebuild...\n", p.name)
		}
		return
	}
	frac := pr.Fraction()
	if p.terminal {
		const width = 30
		done := int(frac * width)
		fmt.Fprintf(p.w, "\rrebuilding %s [%s%s] %3.0f%%  checkpoint %s / head %s ", p.name,
			strings.Repeat("=", done), strings.Repeat(" ", width-done), frac*100, pr.Position, pr.Head)
		p.drawn = true
		return
	}
	if step := int(frac * 10); step > p.step {
		p.step = step
		fmt.Fprintf(p.w, "rebuilding %s: %3.0f%% (checkpoint %s, head %s)\n", p.name, frac*100, pr.Position, pr.Head)
	}
}

func (p *projProgress) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// projDeadLetterJSON is the --json form of a dead letter.
type projDeadLetterJSON struct {
	ID            int64     `json:"id"`
	Projection    string    `json:"projection"`
	Partition     int       `json:"partition"`
	EventID       string    `json:"event_id"`
	StreamID      string    `json:"stream_id"`
	StreamVersion int64     `json:"stream_version"`
	Position      string    `json:"position"`
	Type          string    `json:"type"`
	Error         string    `json:"error"`
	Attempts      int       `json:"attempts"`
	Status        string    `json:"status"`
	ParkedAt      time.Time `json:"parked_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func projListDeadLetters(ctx context.Context, w io.Writer, pc *projContext, filter projectionstore.DeadLetterFilter, jsonOut bool) error {
	dls, err := pc.ps.DeadLetters(ctx, filter)
	if err != nil {
		return err
	}
	if jsonOut {
		enc := json.NewEncoder(w)
		for _, dl := range dls {
			if err := enc.Encode(projDeadLetterJSON{
				ID: dl.ID, Projection: dl.Projection, Partition: dl.Partition, EventID: dl.EventID.String(),
				StreamID: dl.StreamID, StreamVersion: dl.StreamVersion, Position: dl.Position.String(), Type: dl.Type,
				Error: dl.Error, Attempts: dl.Attempts, Status: string(dl.Status), ParkedAt: dl.ParkedAt, UpdatedAt: dl.UpdatedAt,
			}); err != nil {
				return err
			}
		}
		return nil
	}
	if len(dls) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROJECTION\tPARTITION\tSTREAM\tVERSION\tTYPE\tATTEMPTS\tSTATUS\tPARKED AT\tERROR")
	for _, dl := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", dl.ID, dl.Projection, dl.Partition,
			strconv.Quote(dl.StreamID), dl.StreamVersion, dl.Type, dl.Attempts, dl.Status,
			dl.ParkedAt.Format(time.RFC3339), projShorten(dl.Error, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(dls) == filter.EffectiveLimit() {
		fmt.Fprintf(w, "(more may follow: --after %d)\n", dls[len(dls)-1].ID)
	}
	return nil
}

func projSettle(ctx context.Context, w io.Writer, pc *projContext, op string, ids []int64) error {
	var errs []error
	for _, id := range ids {
		var err error
		if op == "retry" {
			err = pc.ps.RetryDeadLetter(ctx, id)
		} else {
			err = pc.ps.SkipDeadLetter(ctx, id)
		}
		switch {
		case err != nil:
			errs = append(errs, err)
		case op == "retry":
			fmt.Fprintf(w, "dead letter %d: retry requested (the partition's holder handles it at its next poll)\n", id)
		default:
			fmt.Fprintf(w, "dead letter %d: skipped\n", id)
		}
	}
	return errors.Join(errs...)
}
