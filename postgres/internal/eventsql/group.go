package eventsql

import (
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Group is the one-stream appends of several callers, each to a different
// stream, flattened into append_group.sql's parameters.
type Group struct {
	// Members are the appends, each an Input of one stream.
	Members []*Input

	streamIDs []string
	expected  []int64
	counts    []int64
	evStream  []int32
	evPos     []int64
	ids       []pgtype.UUID
	types     []string
	schemaVer []int32
	data      []string
	metadata  []*string

	// member maps a stream id to its member's index.
	member map[string]int
}

// NewGroup flattens members, one-stream appends to distinct streams, into
// one statement's parameters. It returns an error when a member appends
// to several streams or two members to the same stream: the statement
// cannot touch a head row twice.
func NewGroup(members []*Input) (*Group, error) {
	total := 0
	for _, m := range members {
		total += len(m.IDs)
	}
	g := &Group{
		Members:   members,
		streamIDs: make([]string, len(members)),
		expected:  make([]int64, len(members)),
		counts:    make([]int64, len(members)),
		evStream:  make([]int32, 0, total),
		evPos:     make([]int64, 0, total),
		ids:       make([]pgtype.UUID, 0, total),
		types:     make([]string, 0, total),
		schemaVer: make([]int32, 0, total),
		data:      make([]string, 0, total),
		metadata:  make([]*string, 0, total),
		member:    make(map[string]int, len(members)),
	}
	for i, m := range members {
		if len(m.StreamIDs) != 1 {
			return nil, fmt.Errorf("group member %d appends to %d streams, want 1", i, len(m.StreamIDs))
		}
		id := m.StreamIDs[0]
		if j, dup := g.member[id]; dup {
			return nil, fmt.Errorf("group members %d and %d both append to stream %q", j, i, id)
		}
		g.member[id] = i
		g.streamIDs[i] = id
		g.expected[i] = m.Expected[0]
		g.counts[i] = m.Counts[0]
		for range m.IDs {
			g.evStream = append(g.evStream, int32(i+1))
		}
		g.evPos = append(g.evPos, m.EvPos...)
		g.ids = append(g.ids, m.IDs...)
		g.types = append(g.types, m.Types...)
		g.schemaVer = append(g.schemaVer, m.SchemaVer...)
		g.data = append(g.data, m.Data...)
		g.metadata = append(g.metadata, m.Metadata...)
	}
	return g, nil
}

// Statement returns append_group.sql and its arguments.
func (g *Group) Statement() (string, []any) {
	return AppendGroupSQL, []any{g.streamIDs, g.expected, g.counts, g.evStream, g.evPos, g.ids, g.types, g.schemaVer, g.data, g.metadata}
}

// ScanResult reads the rows of g.Statement: for each member, parallel to
// g.Members, its result and whether it was stored. A member that was not
// stored inserted nothing (its stream was locked by another transaction,
// or its expectation or order check failed).
func (g *Group) ScanResult(rows pgx.Rows) (res []eventstore.AppendResult, stored []bool, err error) {
	defer rows.Close()
	res = make([]eventstore.AppendResult, len(g.Members))
	n := make([]int64, len(g.Members)) // rows per member
	var (
		streamID        string
		version, global int64
		txid            uint64
	)
	for rows.Next() {
		if err := rows.Scan(&streamID, &version, &global, &txid); err != nil {
			return nil, nil, err
		}
		i, ok := g.member[streamID]
		if !ok {
			return nil, nil, fmt.Errorf("group append returned a row for stream %q, which it did not append to", streamID)
		}
		n[i]++
		if r := &res[i]; version > r.Version {
			r.StreamID = streamID
			r.Version = version
			r.Position = eventstore.Position{Transaction: txid, Global: global}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	stored = make([]bool, len(g.Members))
	for i := range g.Members {
		switch n[i] {
		case 0:
		case g.counts[i]:
			stored[i] = true
		default:
			return nil, nil, fmt.Errorf("group append stored %d of the %d events of stream %q", n[i], g.counts[i], g.streamIDs[i])
		}
	}
	return res, stored, nil
}

// Events returns the number of events of the group.
func (g *Group) Events() int { return len(g.ids) }
