package cli

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/shred"
)

// masterKeyEnv names the environment variable holding the base64 of the
// 32-byte master key that subjects rotate wraps the new key with.
const masterKeyEnv = "CHRONICLE_MASTER_KEY"

func subjectsCommand() command {
	var (
		dbURL string
		yes   bool
	)
	return command{
		name:     "subjects",
		synopsis: "forget SUBJECT --yes | rotate SUBJECT  [--database-url URL]",
		summary:  "forget a data subject (crypto-shredding) or rotate its key",
		help: `Subcommands:

  forget SUBJECT  delete every data key of SUBJECT: the personal fields of
                  its events read as redacted from then on, everywhere
                  (aggregates, projections, bus messages, this CLI), while
                  the rest of its events stays. It cannot be undone: it
                  refuses without --yes. Processes running Chronicle drop
                  the keys they cached within their cache TTL (1 minute by
                  default). Forgetting a forgotten subject again succeeds;
                  an unknown subject is an error.
  rotate SUBJECT  create a new key version for SUBJECT: new events use it,
                  older ones keep reading with theirs. The new key is
                  wrapped with the master key in the ` + masterKeyEnv + `
                  environment variable (base64 of 32 bytes), the one the
                  application uses with shred.NewAESKeyEncryptionKey;
                  applications with a KMS rotate through the Go API.

Sealed personal values show in "streams read" as [encrypted], or as
[redacted] once their subject is forgotten. docs/operations.md, "GDPR
erasure".`,
		flags: func(fs *flag.FlagSet) {
			databaseFlag(fs, &dbURL)
			fs.BoolVar(&yes, "yes", false, "forget: confirm the erasure (it cannot be undone)")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) == 0 {
				return usagef("missing subcommand")
			}
			if len(args) != 2 {
				return usagef("subjects %s takes one subject id", args[0])
			}
			subject := args[1]
			if err := shred.ValidateSubject(subject); err != nil {
				return usagef("%v", err)
			}
			var run func(ctx context.Context, keys *postgres.SubjectKeyStore) error
			switch sub := args[0]; sub {
			case "forget":
				if !yes {
					return fmt.Errorf("refusing to forget subject %q without --yes: its personal data would be unreadable for good; nothing was changed", subject)
				}
				run = func(ctx context.Context, keys *postgres.SubjectKeyStore) error {
					if err := keys.Forget(ctx, subject); err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "forgot subject %q: its personal fields now read as [redacted]\n", subject)
					return nil
				}
			case "rotate":
				if yes {
					return usagef("--yes only confirms subjects forget")
				}
				kek, err := masterKey(env)
				if err != nil {
					return err
				}
				run = func(ctx context.Context, keys *postgres.SubjectKeyStore) error {
					s, err := shred.New(keys, &shred.Config{KeyEncryptionKey: kek, CacheSize: -1})
					if err != nil {
						return err
					}
					k, err := s.Rotate(ctx, subject)
					if err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "subject %q: new key version %d\n", subject, k.Version)
					return nil
				}
			default:
				return usagef("unknown subcommand %q", sub)
			}
			u, err := databaseURL(env, dbURL)
			if err != nil {
				return err
			}
			return redact(withSubjectKeys(ctx, u, run), u)
		},
	}
}

func masterKey(env *Env) (*shred.AESKeyEncryptionKey, error) {
	raw := strings.TrimSpace(env.Getenv(masterKeyEnv))
	if raw == "" {
		return nil, fmt.Errorf("subjects rotate needs the master key in %s (base64 of 32 bytes)", masterKeyEnv)
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("%s is not base64: %w", masterKeyEnv, err)
	}
	return shred.NewAESKeyEncryptionKey(b)
}

func withSubjectKeys(ctx context.Context, databaseURL string, fn func(context.Context, *postgres.SubjectKeyStore) error) error {
	pool, err := openPool(ctx, databaseURL, 2, 10*time.Second)
	if err != nil {
		return err
	}
	defer pool.Close()
	keys, err := postgres.NewSubjectKeyStore(pool)
	if err != nil {
		return err
	}
	return fn(ctx, keys)
}

// withStoreMasker is withStore for commands printing payloads: fn also gets
// a masker reading the key table, so that sealed personal values print as
// [encrypted] or [redacted] (never as ciphertext, never decrypted).
func withStoreMasker(ctx context.Context, databaseURL string, fn func(context.Context, *postgres.Store, *shred.Masker) error) error {
	return withPoolStore(ctx, databaseURL, func(ctx context.Context, pool *pgxpool.Pool, store *postgres.Store) error {
		keys, err := postgres.NewSubjectKeyStore(pool)
		if err != nil {
			return err
		}
		return fn(ctx, store, shred.NewMasker(keys))
	})
}
