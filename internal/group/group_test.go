package group_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"orderflow/internal/group"
	"orderflow/internal/group/grouptest"
	"orderflow/internal/testutil"
)

// item is a test item: its value and the channel its write closes.
type item struct {
	v    int
	done chan struct{}
}

func newItem(v int) item { return item{v, make(chan struct{})} }

// recorder writes groups by recording their values.
type recorder struct {
	mu     sync.Mutex
	groups [][]int
}

func (r *recorder) write(group []item) {
	var vs []int
	for _, it := range group {
		vs = append(vs, it.v)
	}
	r.mu.Lock()
	r.groups = append(r.groups, vs)
	r.mu.Unlock()
	for _, it := range group {
		close(it.done)
	}
}

// hold makes a writer of w busy until release is called.
func hold(w *group.Writer[item]) (release func()) {
	it := newItem(0)
	return grouptest.Hold(w, it, it.done, func(group []item) {
		for _, it := range group {
			close(it.done)
		}
	})
}

// write calls w.Write for a new item of value v in the background; the returned channel is
// closed when Write returns.
func write(w *group.Writer[item], r *recorder, v int) <-chan struct{} {
	returned := make(chan struct{})
	go func() {
		it := newItem(v)
		w.Write(it, it.done, r.write)
		close(returned)
	}()
	return returned
}

// TestMoreWritersOnlyForAWholeGroup: while the first writer is busy, items behind a short
// queue wait for it; the item that makes the queue a whole group is written by a second
// writer, with the waiting ones, in one group.
func TestMoreWritersOnlyForAWholeGroup(t *testing.T) {
	t.Parallel()
	w, r := group.NewWriter[item](2, 4), &recorder{}
	release := hold(w)
	defer release()
	first := write(w, r, 1)
	testutil.Eventually(t, 5*time.Second, "the first item to queue", func() bool { return w.Waiting() == 1 })
	second := write(w, r, 2)
	testutil.Eventually(t, 5*time.Second, "two items to queue", func() bool { return w.Waiting() == 2 })
	third := write(w, r, 3)
	testutil.Eventually(t, 5*time.Second, "three items to queue", func() bool { return w.Waiting() == 3 })
	select {
	case <-first:
		t.Fatal("an item behind a busy writer was written with 3 waiting, fewer than a group of 4")
	case <-time.After(100 * time.Millisecond):
	}
	fourth := write(w, r, 4)
	for i, c := range []<-chan struct{}{first, second, third, fourth} {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatalf("item %d: a whole group waited for the busy writer", i+1)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.groups) != 1 || !slices.Equal(r.groups[0], []int{1, 2, 3, 4}) {
		t.Errorf("groups written: %v, want [[1 2 3 4]]", r.groups)
	}
}

// TestOneWriterTakesWhatWaits: once the only writer is free, the next caller writes every
// waiting item, in groups of at most max, oldest first.
func TestOneWriterTakesWhatWaits(t *testing.T) {
	t.Parallel()
	w, r := group.NewWriter[item](1, 2), &recorder{}
	release := hold(w)
	var returned []<-chan struct{}
	for v := 1; v <= 3; v++ {
		returned = append(returned, write(w, r, v))
		testutil.Eventually(t, 5*time.Second, "the item to queue", func() bool { return w.Waiting() == v })
	}
	release()
	for _, c := range returned {
		<-c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.groups) != 2 || !slices.Equal(r.groups[0], []int{1, 2}) || !slices.Equal(r.groups[1], []int{3}) {
		t.Errorf("groups written: %v, want [[1 2] [3]]", r.groups)
	}
}
