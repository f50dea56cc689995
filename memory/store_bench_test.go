package memory_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
)

// The payload of every benchmark event (docs: shared BENCH.md).
var benchPayload = []byte(`{"account_id":"acc-000123","amount":125.5,"currency":"EUR","note":"deposit via ATM 42"}`)

func benchEvents(n int) []eventstore.Event {
	events := make([]eventstore.Event, n)
	for i := range events {
		events[i] = eventstore.Event{Type: "DepositCompleted", SchemaVersion: 1, Data: benchPayload}
	}
	return events
}

func reportEventsPerSecond(b *testing.B, events int) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// benchAppend: commands that each append perAppend events to one of 50
// existing account streams per writer, with the exact expected version
// the command loaded. The store generates the event IDs.
func benchAppend(b *testing.B, perAppend, writers int) {
	ctx := context.Background()
	s := memory.New(nil)
	const streams = 50
	var nextWriter atomic.Int64
	setupWriter := func() ([]string, []int64) {
		w := nextWriter.Add(1)
		names := make([]string, streams)
		versions := make([]int64, streams)
		for i := range names {
			names[i] = fmt.Sprintf("account-%d-%d", w, i)
			if _, err := s.Append(ctx, names[i], eventstore.NoStream, benchEvents(1)...); err != nil {
				b.Fatal(err)
			}
			versions[i] = 1
		}
		return names, versions
	}
	events := benchEvents(perAppend)
	var total atomic.Int64
	if writers == 1 {
		names, versions := setupWriter()
		i := 0
		for b.Loop() {
			k := i % streams
			res, err := s.Append(ctx, names[k], eventstore.Exact(versions[k]), events...)
			if err != nil {
				b.Fatal(err)
			}
			versions[k] = res.Version
			i++
		}
		total.Add(int64(i * perAppend))
	} else {
		b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0))) // RunParallel starts GOMAXPROCS × this goroutines
		b.RunParallel(func(pb *testing.PB) {
			names, versions := setupWriter()
			i := 0
			for pb.Next() {
				k := i % streams
				res, err := s.Append(ctx, names[k], eventstore.Exact(versions[k]), events...)
				if err != nil {
					b.Error(err)
					return
				}
				versions[k] = res.Version
				i++
			}
			total.Add(int64(i * perAppend))
		})
	}
	reportEventsPerSecond(b, int(total.Load()))
}

func BenchmarkAppend1(b *testing.B)           { benchAppend(b, 1, 1) }
func BenchmarkAppend1Parallel8(b *testing.B)  { benchAppend(b, 1, 8) }
func BenchmarkAppend10(b *testing.B)          { benchAppend(b, 10, 1) }
func BenchmarkAppend10Parallel8(b *testing.B) { benchAppend(b, 10, 8) }

// BenchmarkReadStream100 reads a whole 100-event stream (what loading an
// aggregate reads), among 1,000 such streams.
func BenchmarkReadStream100(b *testing.B) {
	ctx := context.Background()
	s := memory.New(nil)
	const streams = 1000
	for i := range streams {
		if _, err := s.Append(ctx, fmt.Sprintf("account-%d", i), eventstore.NoStream, benchEvents(100)...); err != nil {
			b.Fatal(err)
		}
	}
	reads := 0
	for b.Loop() {
		recs, err := s.ReadStream(ctx, fmt.Sprintf("account-%d", reads%streams), eventstore.ReadStreamOptions{})
		if err != nil || len(recs) != 100 {
			b.Fatalf("ReadStream: %d events, %v", len(recs), err)
		}
		reads++
	}
	b.ReportMetric(float64(reads)/b.Elapsed().Seconds(), "loads/s")
	reportEventsPerSecond(b, reads*100)
}

// BenchmarkReadAll200k pages through 200,000 events from the start, 1,000
// at a time, checkpointing each page, as a projection catching up does.
func BenchmarkReadAll200k(b *testing.B) {
	ctx := context.Background()
	s := memory.New(nil)
	const total = 200_000
	for i := range total / 10 {
		if _, err := s.Append(ctx, fmt.Sprintf("account-%d", i%5000), eventstore.Any, benchEvents(10)...); err != nil {
			b.Fatal(err)
		}
	}
	read := 0
	for b.Loop() {
		var checkpoint eventstore.Position
		n := 0
		for {
			recs, err := s.ReadAll(ctx, checkpoint, 1000)
			if err != nil {
				b.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			n += len(recs)
			checkpoint = recs[len(recs)-1].Position
		}
		if n != total {
			b.Fatalf("read %d events, want %d", n, total)
		}
		read += n
	}
	reportEventsPerSecond(b, read)
}
