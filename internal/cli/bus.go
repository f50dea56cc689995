package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/natsbus"
)

func busCommand() command {
	var (
		natsURL string
		stream  string
		dlq     string
		group   string
		limit   int
		jsonOut bool
	)
	return command{
		name:     "bus",
		synopsis: "dead-letters list|replay ID...|discard ID...  [--nats URL] [--stream NAME]",
		summary:  "manage the event bus's dead letters on NATS JetStream",
		help: `Subcommands:

  dead-letters list        messages that consumer groups gave up on, oldest
                           first: ID, group, event, attempts, reason
                           (--group, --limit, --json)
  dead-letters replay ID   hand the message to its group again (only that
                           group receives it) and remove the dead letter
  dead-letters discard ID  remove the dead letter for good

The streams are used as they are (never created): --stream names the event
stream (default CHRONICLE), --dead-letter-stream the dead letters' (default
STREAM_DLQ). See docs/eventbus.md.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&natsURL, "nats", "", "NATS server `url`, e.g. nats://127.0.0.1:4222 (default $NATS_URL)")
			fs.StringVar(&stream, "stream", "", "the event stream's `name` (default CHRONICLE)")
			fs.StringVar(&dlq, "dead-letter-stream", "", "the dead-letter stream's `name` (default STREAM_DLQ)")
			fs.StringVar(&group, "group", "", "dead-letters list: only the dead letters of consumer group `name`")
			fs.IntVar(&limit, "limit", 0, "dead-letters list: at most `n` dead letters (default 100)")
			fs.BoolVar(&jsonOut, "json", false, "dead-letters list: print JSON")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) == 0 {
				return usagef("missing subcommand")
			}
			if args[0] != "dead-letters" {
				return usagef("unknown subcommand %q", args[0])
			}
			if len(args) < 2 {
				return usagef("missing dead-letters subcommand")
			}
			sub, ids := args[1], args[2:]
			switch sub {
			case "list":
				if len(ids) > 0 {
					return usagef("dead-letters list takes no arguments")
				}
				if limit < 0 {
					return usagef("--limit must not be negative")
				}
			case "replay", "discard":
				if len(ids) == 0 {
					return usagef("dead-letters %s takes one or more dead letter IDs", sub)
				}
				for _, id := range ids {
					if n, err := strconv.ParseUint(id, 10, 64); err != nil || n == 0 {
						return usagef("%q is not a dead letter ID", id)
					}
				}
			default:
				return usagef("unknown dead-letters subcommand %q", sub)
			}
			url := natsURL
			if url == "" {
				url = env.Getenv("NATS_URL")
			}
			if url == "" {
				return fmt.Errorf("no nats url: pass --nats or set NATS_URL")
			}
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			nc, err := natsbus.Connect(url, "chronicle-cli")
			if err != nil {
				return err
			}
			defer nc.Close()
			bus, err := natsbus.New(cctx, nc, &natsbus.Config{Stream: stream, DeadLetterStream: dlq, Existing: true})
			if err != nil {
				return err
			}
			switch sub {
			case "list":
				dls, err := bus.DeadLetters(cctx, eventbus.DeadLetterFilter{Group: group, Limit: limit})
				if err != nil {
					return err
				}
				return printDeadLetters(env.Stdout, dls, jsonOut)
			case "replay":
				for _, id := range ids {
					if err := bus.ReplayDeadLetter(cctx, id); err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "dead letter %s replayed\n", id)
				}
			case "discard":
				for _, id := range ids {
					if err := bus.DiscardDeadLetter(cctx, id); err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "dead letter %s discarded\n", id)
				}
			}
			return nil
		},
	}
}

// busDeadLetterJSON is the JSON form of a dead letter.
type busDeadLetterJSON struct {
	ID            string    `json:"id"`
	Group         string    `json:"group"`
	EventID       string    `json:"event_id"`
	Type          string    `json:"type"`
	StreamID      string    `json:"stream_id"`
	StreamVersion int64     `json:"stream_version"`
	Attempts      int       `json:"attempts"`
	Reason        string    `json:"reason"`
	DeadAt        time.Time `json:"dead_at"`
}

func printDeadLetters(w io.Writer, dls []eventbus.DeadLetter, jsonOut bool) error {
	if jsonOut {
		out := make([]busDeadLetterJSON, 0, len(dls))
		for _, d := range dls {
			out = append(out, busDeadLetterJSON{
				ID: d.ID, Group: d.Group, EventID: d.Message.EventID.String(), Type: d.Message.Type,
				StreamID: d.Message.StreamID, StreamVersion: d.Message.StreamVersion,
				Attempts: d.Attempts, Reason: d.Reason, DeadAt: d.DeadAt,
			})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(dls) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGROUP\tEVENT\tTYPE\tSTREAM\tATTEMPTS\tDEAD AT\tREASON")
	for _, d := range dls {
		reason := strings.ReplaceAll(d.Reason, "\n", " ")
		if len(reason) > 120 {
			reason = reason[:117] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s@%d\t%d\t%s\t%s\n", d.ID, d.Group, d.Message.EventID, d.Message.Type,
			d.Message.StreamID, d.Message.StreamVersion, d.Attempts, d.DeadAt.Format(time.RFC3339), reason)
	}
	return tw.Flush()
}
