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

// onceItem is an item whose done channel may be closed more than once, so that its caller
// can leave (done closed beforehand) while the item stays queued for a writer.
type onceItem struct {
	v    int
	once *sync.Once
	done chan struct{}
}

func newOnceItem(v int) onceItem { return onceItem{v, new(sync.Once), make(chan struct{})} }

func (it onceItem) close() { it.once.Do(func() { close(it.done) }) }

// TestAWriterStopsOnceAnotherTookItsItem: a writer writing an older group stops there when
// another writer has taken its own item meanwhile, rather than writing items queued after
// its own, whose wait could outlast its request's. The items after it wait for a free writer.
func TestAWriterStopsOnceAnotherTookItsItem(t *testing.T) {
	t.Parallel()
	w := group.NewWriter[onceItem](2, 2)
	// Groups holding these values wait until their gate is opened.
	gates := map[int]chan struct{}{-1: make(chan struct{}), 1: make(chan struct{}), 4: make(chan struct{})}
	var mu sync.Mutex
	var written []int
	write := func(g []onceItem) {
		for _, it := range g {
			if gate, ok := gates[it.v]; ok {
				<-gate
			}
		}
		mu.Lock()
		for _, it := range g {
			written = append(written, it.v)
		}
		mu.Unlock()
		for _, it := range g {
			it.close()
		}
	}
	isWritten := func(v int) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(written, v)
	}
	start := func(it onceItem) <-chan struct{} {
		returned := make(chan struct{})
		go func() { w.Write(it, it.done, write); close(returned) }()
		return returned
	}
	// queueAlone queues an item whose caller has left: no writer's place is free for it.
	queueAlone := func(v int) {
		it := newOnceItem(v)
		it.close()
		w.Write(it, it.done, write)
	}
	h := newOnceItem(0)
	releaseH := grouptest.Hold(w, h, h.done, write) // the first writer, busy
	// The other writer, busy with -1 and -2: -2's caller found a whole group waiting.
	queueAlone(-1)
	start(newOnceItem(-2))
	testutil.Eventually(t, 5*time.Second, "-1 and -2 taken", func() bool { return w.Waiting() == 0 })
	// 1 and 2 queued, a whole group, and then item 3, whose caller waits for a writer's place.
	queueAlone(1)
	queueAlone(2)
	mine := newOnceItem(3)
	mineReturned := start(mine)
	testutil.Eventually(t, 5*time.Second, "item 3 queued", func() bool { return w.Waiting() == 3 })
	// The other writer done, item 3's caller takes its place and writes 1 and 2, held.
	close(gates[-1])
	testutil.Eventually(t, 5*time.Second, "item 3's caller writing 1 and 2", func() bool { return w.Waiting() == 1 })
	// Item 4 makes a whole group with 3; with the first writer free, 4's caller takes 3 and
	// 4, held.
	fourReturned := start(newOnceItem(4))
	testutil.Eventually(t, 5*time.Second, "item 4 queued", func() bool { return w.Waiting() == 2 })
	releaseH()
	testutil.Eventually(t, 5*time.Second, "item 4's caller taking 3 and 4", func() bool { return w.Waiting() == 0 })
	fiveReturned := start(newOnceItem(5))
	testutil.Eventually(t, 5*time.Second, "item 5 queued", func() bool { return w.Waiting() == 1 })
	close(gates[1]) // 1 and 2 written: item 3's caller, its item taken by 4's, must not take 5
	testutil.Eventually(t, 5*time.Second, "1 and 2 written", func() bool { return isWritten(2) })
	time.Sleep(100 * time.Millisecond)
	if isWritten(5) {
		t.Fatal("item 3's caller wrote item 5, queued after its own, which another writer had taken")
	}
	close(gates[4])
	for _, c := range []<-chan struct{}{mineReturned, fourReturned, fiveReturned} {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatal("a caller did not return once its item was written")
		}
	}
	if !isWritten(5) {
		t.Error("item 5 never written")
	}
}

// TestAPanickingWriteLeavesTheWriterFree: a write that panics (recovered further up, as the
// HTTP server recovers a handler's panic) does not keep the writer's place.
func TestAPanickingWriteLeavesTheWriterFree(t *testing.T) {
	t.Parallel()
	w := group.NewWriter[item](1, 8)
	func() {
		defer func() { _ = recover() }()
		it := newItem(1)
		w.Write(it, it.done, func(g []item) {
			for _, it := range g {
				close(it.done)
			}
			panic("write failed")
		})
	}()
	select {
	case <-write(w, &recorder{}, 2):
	case <-time.After(5 * time.Second):
		t.Fatal("the next Write never returned: the panicking writer kept the writer's place")
	}
}
