package shred

import (
	"container/list"
	"crypto/cipher"
	"sync"
	"time"
)

// cache is a bounded LRU of unwrapped data keys, each entry valid for a TTL.
// Entries are keyed "k\x00<key id>" (a key by ID, for opening) or
// "s\x00<subject>" (a subject's current key, for sealing). An entry with a
// nil aead records that a key ID does not exist.
type cache struct {
	size int
	ttl  time.Duration

	mu      sync.Mutex
	lru     *list.List // of *cacheEntry, most recently used first
	entries map[string]*list.Element
	// gen counts forgets; a key fetched before a forget is not cached.
	gen uint64
}

type cacheEntry struct {
	k    string
	key  Key // Wrapped is dropped
	aead cipher.AEAD
	// nonceKey derives a field's nonce from its plaintext (see sealField).
	nonceKey []byte
	expires  time.Time
}

func newCache(size int, ttl time.Duration) *cache {
	return &cache{size: size, ttl: ttl, lru: list.New(), entries: map[string]*list.Element{}}
}

// get returns a live entry, and the generation to pass to put after a miss.
func (c *cache) get(k string, now time.Time) (*cacheEntry, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[k]
	if !ok {
		return nil, c.gen, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.entries, k)
		return nil, c.gen, false
	}
	c.lru.MoveToFront(el)
	return e, c.gen, true
}

// put caches e unless a forget ran since gen was read.
func (c *cache) put(e *cacheEntry, gen uint64, now time.Time) {
	if c.size <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	e.key.Wrapped = nil
	e.expires = now.Add(c.ttl)
	if el, ok := c.entries[e.k]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.entries[e.k] = c.lru.PushFront(e)
	for c.lru.Len() > c.size {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.entries, last.Value.(*cacheEntry).k)
	}
}

// forget drops every entry of subject and fences out fetches in flight.
func (c *cache) forget(subject string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for el := c.lru.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*cacheEntry); e.key.Subject == subject {
			c.lru.Remove(el)
			delete(c.entries, e.k)
		}
		el = next
	}
}

// drop removes one entry (a subject's current key after a rotation).
func (c *cache) drop(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.lru.Remove(el)
		delete(c.entries, k)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
