// Package shred implements crypto-shredding: the personal fields of events
// are encrypted with a data key per data subject, so that forgetting the
// subject — deleting its keys — erases that data from every event, every
// backup and every broker message at once, while the events themselves
// stay immutable.
//
// # Marking personal data
//
// Tag the personal fields of an event type `chronicle:"personal"` and the
// string field naming its data subject `chronicle:"subject"`; embed
// [eventstore.Redactions] to learn, after decoding, which fields were
// redacted:
//
//	type CustomerRegistered struct {
//		eventstore.Redactions
//		CustomerID string `json:"customer_id" chronicle:"subject"`
//		Email      string `json:"email" chronicle:"personal"`
//		Plan       string `json:"plan"`
//	}
//
// Then give the registry a [Shredder] as its cipher:
//
//	kek, err := shred.NewAESKeyEncryptionKey(masterKey) // 32 bytes, kept outside the database
//	keys, err := postgres.NewSubjectKeyStore(pool, nil) // or memory.NewSubjectKeyStore()
//	shredder, err := shred.New(keys, &shred.Config{KeyEncryptionKey: kek})
//	registry := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: shredder})
//
// [eventstore.Registry.Encode] seals each personal field before the event
// reaches the store: PostgreSQL, its backups, the relay's broker messages
// and the CLI only ever see sealed values. [eventstore.Registry.Decode]
// opens them, so aggregates, projections and bus handlers see plain
// values.
//
// # The stored form
//
// A sealed field holds a JSON string
//
//	"enc:v1:<key id>:<base64url(nonce || ciphertext)>"
//
// where the key ID is 128 random bits in hexadecimal (it reveals nothing
// of the subject) and the ciphertext is AES-256-GCM of the field's JSON
// value, with the key ID and the field's name as associated data. The
// rest of the payload is unchanged.
//
// The nonce is synthetic (HMAC-SHA-256 of the field and its value, under a
// key derived from the data key): encoding the same event again gives the
// same bytes, so a retried append stays an idempotent no-op. The price is
// that equal values of one field of one subject, under one key version,
// have equal ciphertexts; values of other subjects, fields or versions
// never match.
//
// # Keys
//
// Each subject has data keys of versions 1, 2, ... in a [KeyStore]
// (package memory and package postgres implement it), wrapped by a
// [KeyEncryptionKey] that the application supplies: [AESKeyEncryptionKey]
// holds a master key in memory, and a KMS plugs in through the same two
// calls. The subject's first key is created when its first personal value
// is sealed. [Shredder.Rotate] adds a version: new values use it, old
// values still open with theirs.
//
// Unwrapped keys are cached in a bounded LRU ([Config.CacheSize]) whose
// entries live [Config.CacheTTL]: a forget through this [Shredder] drops
// the subject's keys from its cache at once, and other processes drop
// theirs within the TTL.
//
// # Forgetting
//
// [Shredder.Forget] deletes the subject's keys and remembers the subject
// as forgotten. From then on its sealed fields decode as their zero values
// and are listed by [eventstore.Redactions.Redacted]; the events keep
// their types, versions, positions and every other field, so aggregates
// still load and projections still replay. Sealing new personal data for
// a forgotten subject fails with [ErrSubjectForgotten]. Tools without keys
// show sealed values through a [Masker] as "[encrypted]" or "[redacted]".
package shred
