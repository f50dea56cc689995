package console

import (
	"context"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/shred"
)

// maskPersonal replaces, in place, the sealed personal values of recs by
// [encrypted] or [redacted] (see [Config.SubjectKeys]). When the key store
// cannot be read, the values show as [encrypted] and the failure is
// logged: a page never shows ciphertext, and never fails for it.
func (c *Console) maskPersonal(ctx context.Context, recs []eventstore.Record) {
	m := shred.NewMasker(c.cfg.SubjectKeys)
	for i := range recs {
		data, err := m.Mask(ctx, recs[i].Data)
		if err != nil {
			c.cfg.Logger.WarnContext(ctx, "chronicle console: cannot read subject keys; showing sealed values as [encrypted]", "error", err)
			m = shred.NewMasker(nil)
			data, _ = m.Mask(ctx, recs[i].Data) // without keys, Mask cannot fail
		}
		recs[i].Data = data
	}
}
