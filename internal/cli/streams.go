package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/shred"
)

func streamsCommand() command {
	var (
		dbURL    string
		from     int64
		limit    int
		backward bool
		jsonOut  bool
		prefix   string
		before   int64
		archived bool
		life     lifecycleArgs
	)
	return command{
		name:     "streams",
		synopsis: "read STREAM [--from N] [--limit N] [--backward] [--archived] [--json] | list [--prefix P] [--limit N] [--before SEQ] [--json] | head | state STREAM | delete [--hard] --yes STREAM | truncate --yes STREAM VERSION | archive STREAM | restore STREAM  [--database-url URL]",
		summary:  "list streams, read a stream's events, show the head of the global order, or delete, truncate, archive and restore streams",
		help: `Subcommands:

  read STREAM  print the events of STREAM in version order: version, global
               position, type, schema version, recorded-at time, payload
  list         print one page of streams, newest-created first: stream id,
               version, created and updated times, and the cursor (SEQ);
               --prefix keeps the streams whose id starts with it, --limit
               sets the page size (default 100), and the last line gives the
               --before value that prints the next page
  head         print the position of the last event readers can see now and
               the tailing lag (age of the oldest transaction still running)

The stream lifecycle (see docs/operations.md, "Retention"). Each prints the
stream's status, version and first version afterwards; each is one
transaction that appends to the stream wait for; repeating one changes
nothing.

  state STREAM        print the stream's status (live, deleted, archived,
                      hard_deleted), version and first version
  delete --yes STREAM soft-delete: the stream reads as not found and refuses
                      appends; its events move to the archive and restore
                      brings them back; without --yes it only says what it
                      would do
  delete --hard --yes STREAM
                      remove the events for good (archived ones and the
                      snapshot too) and leave a tombstone: the stream can
                      never be read, appended to or recreated
  truncate --yes STREAM VERSION
                      remove the events before VERSION for good; the stream
                      keeps its version and appends go on (aggregates then
                      load from a snapshot at VERSION-1 or later)
  archive STREAM      move the events to chronicle.events_archive: the stream
                      reads as archived and refuses appends; read them with
                      streams read --archived
  restore STREAM      bring an archived or deleted stream back with every
                      event at its version and position`,
		flags: func(fs *flag.FlagSet) {
			databaseFlag(fs, &dbURL)
			fs.Int64Var(&from, "from", 0, "first `version` to print (reading backward: the highest)")
			fs.IntVar(&limit, "limit", 0, "read: print at most `n` events (0: all); list: the page size (0: 100)")
			fs.StringVar(&prefix, "prefix", "", "list: only streams whose id starts with `p`")
			fs.Int64Var(&before, "before", 0, "list: only streams created before the one with this `seq` (the next page)")
			fs.BoolVar(&backward, "backward", false, "read from the newest event to the oldest")
			fs.BoolVar(&jsonOut, "json", false, "print one JSON object per event")
			fs.BoolVar(&archived, "archived", false, "read: read an archived or deleted stream's events from the archive")
			fs.BoolVar(&life.yes, "yes", false, "confirm streams delete or streams truncate, which remove events")
			fs.BoolVar(&life.hard, "hard", false, "delete: remove the events for good and leave a tombstone")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) == 0 {
				return usagef("missing subcommand")
			}
			var (
				run func(ctx context.Context, store *postgres.Store) error
				// runMasked replaces run for commands printing payloads.
				runMasked func(ctx context.Context, store *postgres.Store, mask *shred.Masker) error
			)
			if archived && args[0] != "read" {
				return usagef("--archived is a flag of streams read")
			}
			switch sub := args[0]; sub {
			case "read":
				if len(args) != 2 {
					return usagef("streams read takes one stream id")
				}
				if prefix != "" || before != 0 {
					return usagef("--prefix and --before are flags of streams list")
				}
				if from < 0 || limit < 0 {
					return usagef("--from and --limit must not be negative")
				}
				opts := eventstore.ReadStreamOptions{From: from, Limit: limit}
				if backward {
					opts.Direction = eventstore.Backward
				}
				streamID := args[1]
				runMasked = func(ctx context.Context, store *postgres.Store, mask *shred.Masker) error {
					if archived {
						return printStream(ctx, env.Stdout, archiveReader{store}, streamID, opts, jsonOut, mask)
					}
					return printStream(ctx, env.Stdout, store, streamID, opts, jsonOut, mask)
				}
			case "list":
				if len(args) != 1 {
					return usagef("streams list takes no arguments (use --prefix)")
				}
				if from != 0 || backward {
					return usagef("--from and --backward are flags of streams read")
				}
				opts := eventstore.ListStreamsOptions{Prefix: prefix, Before: before, Limit: limit}
				if err := opts.Validate(); err != nil {
					return usagef("streams list: %v", err)
				}
				run = func(ctx context.Context, store *postgres.Store) error {
					return printStreams(ctx, env.Stdout, store, opts, jsonOut)
				}
			case "head":
				if len(args) != 1 {
					return usagef("streams head takes no arguments")
				}
				run = func(ctx context.Context, store *postgres.Store) error {
					return printHead(ctx, env.Stdout, store)
				}
			default:
				lifecycle, ok, err := lifecycleSubcommand(env.Stdout, sub, args, life)
				if err != nil {
					return err
				}
				if !ok {
					return usagef("unknown subcommand %q", sub)
				}
				run = func(ctx context.Context, store *postgres.Store) error { return lifecycle(ctx, store) }
			}
			if (life.yes || life.hard) && (args[0] == "read" || args[0] == "list" || args[0] == "head") {
				return usagef("--yes and --hard are flags of streams delete and streams truncate")
			}
			u, err := databaseURL(env, dbURL)
			if err != nil {
				return err
			}
			if runMasked != nil {
				return redact(withStoreMasker(ctx, u, runMasked), u)
			}
			return redact(withStore(ctx, u, run), u)
		},
	}
}

// withStore opens a pool and a poll-only store (a one-shot command needs no
// LISTEN connection), checks the connection and runs fn.
func withStore(ctx context.Context, databaseURL string, fn func(context.Context, *postgres.Store) error) error {
	return withPoolStore(ctx, databaseURL, func(ctx context.Context, _ *pgxpool.Pool, store *postgres.Store) error {
		return fn(ctx, store)
	})
}

// withPoolStore is [withStore] for commands that also need the pool.
func withPoolStore(ctx context.Context, databaseURL string, fn func(context.Context, *pgxpool.Pool, *postgres.Store) error) error {
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
	return fn(ctx, pool, store)
}

// recordJSON is the --json form of a record.
type recordJSON struct {
	EventID       string              `json:"event_id"`
	StreamID      string              `json:"stream_id"`
	StreamVersion int64               `json:"stream_version"`
	Position      string              `json:"position"`
	Type          string              `json:"type"`
	SchemaVersion int                 `json:"schema_version"`
	Data          json.RawMessage     `json:"data"`
	Metadata      eventstore.Metadata `json:"metadata"`
	RecordedAt    time.Time           `json:"recorded_at"`
}

// printStream prints the events of a stream; mask, when not nil, replaces
// sealed personal values by [encrypted] or [redacted].
func printStream(ctx context.Context, w io.Writer, store eventstore.Store, streamID string, opts eventstore.ReadStreamOptions, jsonOut bool, mask *shred.Masker) error {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return err
	}
	var (
		tw    *tabwriter.Writer
		enc   *json.Encoder
		count int
	)
	if jsonOut {
		enc = json.NewEncoder(w)
	} else {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tPOSITION\tTYPE\tSCHEMA\tRECORDED AT\tDATA")
	}
	for rec, err := range eventstore.ReadStreamSeq(ctx, store, streamID, opts, 500) {
		if err != nil {
			return err
		}
		count++
		if mask != nil {
			if rec.Data, err = mask.Mask(ctx, rec.Data); err != nil {
				return err
			}
		}
		if jsonOut {
			if err := enc.Encode(recordJSON{
				EventID: rec.EventID.String(), StreamID: rec.StreamID, StreamVersion: rec.StreamVersion,
				Position: rec.Position.String(), Type: rec.Type, SchemaVersion: rec.SchemaVersion,
				Data: rec.Data, Metadata: rec.Metadata, RecordedAt: rec.RecordedAt,
			}); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", rec.StreamVersion, rec.Position, rec.Type, rec.SchemaVersion,
			rec.RecordedAt.UTC().Format(time.RFC3339Nano), rec.Data)
	}
	if count == 0 {
		// The store's error already names the stream.
		if _, err := store.StreamVersion(ctx, streamID); errors.Is(err, eventstore.ErrStreamNotFound) {
			return err
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

func printHead(ctx context.Context, w io.Writer, store *postgres.Store) error {
	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	lag, err := store.TailLag(ctx)
	if err != nil {
		return err
	}
	if head.IsZero() {
		fmt.Fprintln(w, "head: none (no readable events)")
	} else {
		fmt.Fprintf(w, "head: %s\n", head)
	}
	fmt.Fprintf(w, "tail lag: %s\n", lag.Round(time.Millisecond))
	return nil
}

// streamJSON is the --json form of a stream in a listing.
type streamJSON struct {
	StreamID  string    `json:"stream_id"`
	Version   int64     `json:"version"`
	Status    string    `json:"status"`
	Seq       int64     `json:"seq"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// printStreams prints one page of streams and, when the page is full, how
// to get the next one.
func printStreams(ctx context.Context, w io.Writer, store eventstore.StreamLister, opts eventstore.ListStreamsOptions, jsonOut bool) error {
	streams, err := store.ListStreams(ctx, opts)
	if err != nil {
		return err
	}
	if jsonOut {
		enc := json.NewEncoder(w)
		for _, st := range streams {
			if err := enc.Encode(streamJSON{StreamID: st.StreamID, Version: st.Version, Status: st.Status.String(), Seq: st.Seq, CreatedAt: st.CreatedAt, UpdatedAt: st.UpdatedAt}); err != nil {
				return err
			}
		}
		return nil
	}
	if len(streams) == 0 {
		if opts.Prefix != "" {
			fmt.Fprintf(w, "no streams with prefix %q\n", opts.Prefix)
		} else {
			fmt.Fprintln(w, "no streams")
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tVERSION\tSTATUS\tCREATED AT\tUPDATED AT\tSEQ")
	for _, st := range streams {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\n", st.StreamID, st.Version, st.Status,
			st.CreatedAt.UTC().Format(time.RFC3339Nano), st.UpdatedAt.UTC().Format(time.RFC3339Nano), st.Seq)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(streams) == opts.EffectiveLimit() {
		next := "chronicle streams list --before " + strconv.FormatInt(streams[len(streams)-1].Seq, 10)
		if opts.Prefix != "" {
			next += " --prefix " + strconv.Quote(opts.Prefix)
		}
		if opts.Limit != 0 {
			next += " --limit " + strconv.Itoa(opts.Limit)
		}
		fmt.Fprintf(w, "more: %s\n", next)
	}
	return nil
}
