package fleet

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Interest: a mirror session keeps a key "<feed hash>.<instance>" alive in
// the interest bucket (TTL = the lease TTL, refreshed every third of it);
// an owner session lists the Feed's keys every third of the TTL and
// remembers whether another instance is interested. The Hub asks
// RemoteInterest when the owner's Feed has had no local subscriber for its
// linger: while another instance has subscribers the owner keeps its
// listener (no handover, no extra read), and it stops one linger after the
// last of them left.

const interestBucket = "firegate_interest"

// interestKV returns the interest bucket, creating it on first use.
func (s *Source) interestKV(ctx context.Context) (jetstream.KeyValue, error) {
	if _, err := s.bucket(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	kv := s.ikv
	s.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: interestBucket, TTL: s.cfg.LeaseTTL, History: 1,
		Storage: jetstream.FileStorage, Replicas: s.cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.ikv = kv
	s.mu.Unlock()
	return kv, nil
}

// instanceToken is this instance's id as a KV key token.
func (s *Source) instanceToken() string { return hashKey(s.cfg.Instance)[:17] }

// declareInterest keeps this instance's interest in hk alive until ctx
// ends, then withdraws it.
func (s *Source) declareInterest(ctx context.Context, hk string) {
	key := hk + "." + s.instanceToken()
	put := func() {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
		if kv, err := s.interestKV(pctx); err == nil {
			_, _ = kv.PutString(pctx, key, s.cfg.Instance)
		}
	}
	put()
	t := time.NewTicker(s.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
			if kv, err := s.interestKV(dctx); err == nil {
				_ = kv.Delete(dctx, key)
			}
			cancel()
			return
		case <-t.C:
			put()
		}
	}
}

// watchInterest refreshes s.interest[key] (whether another instance is
// interested in the Feed) until ctx ends, then forgets it.
func (s *Source) watchInterest(ctx context.Context, key, hk string) {
	me := s.instanceToken()
	check := func() {
		lctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
		kv, err := s.interestKV(lctx)
		if err != nil {
			return
		}
		other := false
		l, err := kv.ListKeysFiltered(lctx, hk+".*")
		if err == nil {
			for k := range l.Keys() {
				if !strings.HasSuffix(k, "."+me) {
					other = true
				}
			}
			_ = l.Stop()
		} else if !errors.Is(err, jetstream.ErrNoKeysFound) {
			return
		}
		s.mu.Lock()
		s.interest[key] = other
		s.mu.Unlock()
	}
	check()
	t := time.NewTicker(s.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			delete(s.interest, key)
			delete(s.askedAt, key)
			s.mu.Unlock()
			return
		case <-t.C:
			check()
		}
	}
}

// RemoteInterest reports whether another instance has subscribers of the
// Feed with key, as this instance's owner session last saw (its listing of
// the interest bucket, or a state request within the lease TTL); false
// when it does not own the Feed. It does not block.
func (s *Source) RemoteInterest(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interestAsks++
	// A state request within the lease TTL counts too: the mirror that sent
	// it may not have shown up in the last listing yet.
	at, asked := s.askedAt[key]
	return s.interest[key] || (asked && time.Since(at) < s.cfg.LeaseTTL)
}
