package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/chronicle-go/chronicle/eventstore"
)

// lifecycleArgs are the flags of the lifecycle subcommands of "chronicle
// streams".
type lifecycleArgs struct {
	yes  bool // confirm delete or truncate
	hard bool // delete: hard delete
}

// lifecycleSubcommand parses a lifecycle subcommand of "chronicle streams"
// (delete, truncate, archive, restore, state) and returns what it runs, or
// ok false when sub is not one.
func lifecycleSubcommand(w io.Writer, sub string, args []string, a lifecycleArgs) (run func(context.Context, eventstore.Lifecycle) error, ok bool, err error) {
	one := func() (string, error) {
		if len(args) != 2 {
			return "", usagef("streams %s takes one stream id", sub)
		}
		return args[1], nil
	}
	if a.hard && sub != "delete" {
		return nil, true, usagef("--hard is a flag of streams delete")
	}
	if a.yes && sub != "delete" && sub != "truncate" {
		return nil, true, usagef("--yes only confirms streams delete and streams truncate")
	}
	switch sub {
	case "delete":
		id, err := one()
		if err != nil {
			return nil, true, err
		}
		return func(ctx context.Context, lc eventstore.Lifecycle) error {
			if !a.yes {
				return refuseLifecycle(ctx, lc, id, sub, a.hard)
			}
			del, verb := lc.DeleteStream, "deleted"
			if a.hard {
				del, verb = lc.HardDeleteStream, "hard-deleted"
			}
			st, err := del(ctx, id, eventstore.Any)
			if err != nil {
				return err
			}
			return printState(w, verb, st)
		}, true, nil
	case "truncate":
		if len(args) != 3 {
			return nil, true, usagef("streams truncate takes a stream id and the first version to keep")
		}
		id := args[1]
		before, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil || before < 1 {
			return nil, true, usagef("streams truncate: %q is not a version (versions start at 1)", args[2])
		}
		return func(ctx context.Context, lc eventstore.Lifecycle) error {
			if !a.yes {
				return refuseTruncate(ctx, lc, id, before)
			}
			st, err := lc.TruncateStream(ctx, id, before)
			if err != nil {
				return err
			}
			return printState(w, "truncated", st)
		}, true, nil
	case "archive", "restore", "state":
		id, err := one()
		if err != nil {
			return nil, true, err
		}
		return func(ctx context.Context, lc eventstore.Lifecycle) error {
			var st eventstore.StreamState
			switch sub {
			case "archive":
				st, err = lc.ArchiveStream(ctx, id, eventstore.Any)
			case "restore":
				st, err = lc.RestoreStream(ctx, id)
			default:
				st, err = lc.StreamState(ctx, id)
			}
			if err != nil {
				return err
			}
			verb := map[string]string{"archive": "archived", "restore": "restored", "state": "stream"}[sub]
			return printState(w, verb, st)
		}, true, nil
	}
	return nil, false, nil
}

// printState prints a stream's state after a lifecycle subcommand.
func printState(w io.Writer, verb string, st eventstore.StreamState) error {
	_, err := fmt.Fprintf(w, "%s %q: status %s, version %d, first version %d\n", verb, st.StreamID, st.Status, st.Version, st.FirstVersion)
	return err
}

// refuseLifecycle explains what streams delete would do without --yes.
func refuseLifecycle(ctx context.Context, lc eventstore.Lifecycle, id, sub string, hard bool) error {
	st, err := lc.StreamState(ctx, id)
	if err != nil {
		return err
	}
	if hard {
		return fmt.Errorf("refusing streams delete --hard without --yes: it would remove the %d events of stream %q (status %s) for good, with its snapshot, and leave a tombstone so that the stream can never be recreated; nothing was changed; run `chronicle streams delete --hard --yes %s` to do it",
			st.Version-st.FirstVersion+1, id, st.Status, strconv.Quote(id))
	}
	return fmt.Errorf("refusing streams %s without --yes: stream %q (status %s, version %d) would read as not found and refuse appends until restored (its events are kept in the archive); nothing was changed; run `chronicle streams delete --yes %s` to do it",
		sub, id, st.Status, st.Version, strconv.Quote(id))
}

// refuseTruncate explains what streams truncate would do without --yes.
func refuseTruncate(ctx context.Context, lc eventstore.Lifecycle, id string, before int64) error {
	st, err := lc.StreamState(ctx, id)
	if err != nil {
		return err
	}
	if err := eventstore.ValidateTruncate(id, before, st.Version); err != nil {
		return err
	}
	gone := max(before-st.FirstVersion, 0)
	return fmt.Errorf("refusing streams truncate without --yes: it would remove the %d events of stream %q before version %d for good (an aggregate then needs a snapshot at version %d or later to load); nothing was changed; run `chronicle streams truncate --yes %s %d` to do it",
		gone, id, before, before-1, strconv.Quote(id), before)
}

// archiveReader is a store whose ReadStream reads the archive, for
// "streams read --archived".
type archiveReader struct {
	eventstore.Store
}

func (a archiveReader) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	lc, ok := a.Store.(eventstore.Lifecycle)
	if !ok {
		return nil, fmt.Errorf("the store has no archive")
	}
	return lc.ReadArchivedStream(ctx, streamID, opts)
}
