package nodecreds

import (
	"container/list"
	"sync"

	"golang.org/x/time/rate"
)

// nodeLimits is a token bucket per node, for at most max nodes (the least
// recently seen is forgotten first), so a kubelet pulling in a loop slows
// only itself.
type nodeLimits struct {
	qps   rate.Limit
	burst int
	max   int

	mu     sync.Mutex
	byName map[string]*list.Element
	order  *list.List
}

type nodeLimit struct {
	name string
	lim  *rate.Limiter
}

func newNodeLimits(qps float64, burst, max int) *nodeLimits {
	return &nodeLimits{qps: rate.Limit(qps), burst: burst, max: max, byName: map[string]*list.Element{}, order: list.New()}
}

func (n *nodeLimits) allow(node string) bool {
	if n.qps <= 0 {
		return true
	}
	n.mu.Lock()
	el, ok := n.byName[node]
	if ok {
		n.order.MoveToFront(el)
	} else {
		el = n.order.PushFront(&nodeLimit{name: node, lim: rate.NewLimiter(n.qps, n.burst)})
		n.byName[node] = el
		for n.order.Len() > n.max {
			old := n.order.Back()
			n.order.Remove(old)
			delete(n.byName, old.Value.(*nodeLimit).name)
		}
	}
	lim := el.Value.(*nodeLimit).lim
	n.mu.Unlock()
	return lim.Allow()
}
