package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

var errPasses, errStays = errors.New("passes"), errors.New("stays")

func passes(err error) bool { return err == errPasses }

func TestDoUntilSuccess(t *testing.T) {
	n := 0
	tries, _, err := Policy{Bound: time.Minute, First: time.Millisecond}.Do(context.Background(), passes, func(prev error) error {
		if (n == 0) != (prev == nil) {
			t.Errorf("try %d given %v", n, prev)
		}
		if n++; n < 4 {
			return errPasses
		}
		return nil
	})
	if err != nil || tries != 4 {
		t.Errorf("Do = %d tries, %v; want success at the 4th", tries, err)
	}
}

func TestDoStops(t *testing.T) {
	tries, _, err := Policy{Bound: time.Minute, First: time.Millisecond}.Do(context.Background(), passes,
		func(error) error { return errStays })
	if err != errStays || tries != 1 {
		t.Errorf("Do of an error that stays = %d tries, %v; want 1 and the error", tries, err)
	}
	tries, _, err = Policy{Bound: -1, First: time.Millisecond}.Do(context.Background(), passes,
		func(error) error { return errPasses })
	if err != errPasses || tries != 1 {
		t.Errorf("Do without retries = %d tries, %v; want 1", tries, err)
	}
	const bound = 300 * time.Millisecond
	start := time.Now()
	tries, spent, err := Policy{Bound: bound, First: 20 * time.Millisecond}.Do(context.Background(), passes,
		func(error) error { return errPasses })
	if took := time.Since(start); err != errPasses || tries < 3 || spent > bound || took > bound+2*time.Second {
		t.Errorf("Do that keeps failing = %d tries in %v (%v), %v; want several within %v", tries, spent, took, err, bound)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, _, err = Policy{Bound: time.Hour, First: time.Second}.Do(ctx, passes, func(error) error { return errPasses })
	if took := time.Since(start); err != errPasses || took > 900*time.Millisecond {
		t.Errorf("Do past the context's end = %v after %v; want the error at the context's end", err, took)
	}
}
