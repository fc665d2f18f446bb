package nodecreds

import (
	"container/list"
	"sync"

	"golang.org/x/time/rate"
)

// keyedLimits is a token bucket per key (a node and namespace, a source
// address), for at most max keys (the least recently seen is forgotten
// first), so one sender in a loop slows only itself.
type keyedLimits struct {
	qps   rate.Limit
	burst int
	max   int

	mu     sync.Mutex
	byName map[string]*list.Element
	order  *list.List
}

type keyedLimit struct {
	name string
	lim  *rate.Limiter
}

func newKeyedLimits(qps float64, burst, max int) *keyedLimits {
	return &keyedLimits{qps: rate.Limit(qps), burst: burst, max: max, byName: map[string]*list.Element{}, order: list.New()}
}

func (n *keyedLimits) allow(key string) bool {
	if n.qps <= 0 {
		return true
	}
	n.mu.Lock()
	el, ok := n.byName[key]
	if ok {
		n.order.MoveToFront(el)
	} else {
		el = n.order.PushFront(&keyedLimit{name: key, lim: rate.NewLimiter(n.qps, n.burst)})
		n.byName[key] = el
		for n.order.Len() > n.max {
			old := n.order.Back()
			n.order.Remove(old)
			delete(n.byName, old.Value.(*keyedLimit).name)
		}
	}
	lim := el.Value.(*keyedLimit).lim
	n.mu.Unlock()
	return lim.Allow()
}
