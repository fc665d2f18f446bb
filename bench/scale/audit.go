package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// The API server's audit log counts the managers' requests from outside:
// a manager killed with SIGKILL takes its own metrics with it, and the
// question "no duplicate or lost write" is about what reached the API
// server. Each manager runs as its own user.

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [%s]
- level: None
`

// auditEvent is what the tool reads of an audit log line.
type auditEvent struct {
	User struct {
		Username string `json:"username"`
	} `json:"user"`
	Verb      string `json:"verb"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	StageTimestamp time.Time `json:"stageTimestamp"`
}

func (e *auditEvent) write() bool {
	switch e.Verb {
	case "create", "update", "patch", "delete":
		return true
	}
	return false
}

func (e *auditEvent) resource() string {
	if e.ObjectRef.Subresource != "" {
		return e.ObjectRef.Resource + "/" + e.ObjectRef.Subresource
	}
	return e.ObjectRef.Resource
}

// auditLog reads the log from where the last read stopped.
type auditLog struct {
	path   string
	offset int64
}

// tally is the requests of one stretch of the run.
type tally struct {
	writes, failed int
	// byWrite counts writes by "verb resource" (failed ones too);
	// byResource writes by resource, leases and Events included: what the
	// manager client's limiter of that resource charged (the cache's lists
	// and the API reader's GETs have clients of their own). reads counts
	// the rest by "verb resource".
	byWrite    map[string]int
	byResource map[string]int
	reads      map[string]int
	byUser     map[string]int
	// secretWrites counts successful writes per Secret, for duplicates.
	secretWrites map[string]int
	lastWrite    time.Time
}

func newTally() *tally {
	return &tally{byWrite: map[string]int{}, byResource: map[string]int{}, reads: map[string]int{}, byUser: map[string]int{}, secretWrites: map[string]int{}}
}

// read adds the lines written since the last call to t.
func (a *auditLog) read(t *tally) error {
	f, err := os.Open(a.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(a.offset, 0); err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil // a partial last line is read next time
		}
		a.offset += int64(len(line))
		var e auditEvent
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		if e.Verb == "watch" {
			continue // not rate-limited, and one per informer
		}
		if !e.write() {
			t.reads[e.Verb+" "+e.ObjectRef.Resource]++
			continue
		}
		t.byResource[e.ObjectRef.Resource]++
		if e.ObjectRef.Resource == "leases" || e.ObjectRef.Resource == "events" {
			continue
		}
		t.writes++
		t.byWrite[e.Verb+" "+e.resource()]++
		t.byUser[e.User.Username]++
		if e.ResponseStatus.Code >= 300 {
			t.failed++
			continue
		}
		if e.ObjectRef.Resource == "secrets" && e.ObjectRef.Subresource == "" {
			t.secretWrites[e.ObjectRef.Namespace+"/"+e.ObjectRef.Name]++
		}
		if e.StageTimestamp.After(t.lastWrite) {
			t.lastWrite = e.StageTimestamp
		}
	}
}

func (t *tally) String() string {
	var parts []string
	for k, v := range t.byWrite {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d (%d refused or failed, retried): %s", t.writes, t.failed, strings.Join(parts, ", "))
}

// readSummary is the reads, largest first.
func (t *tally) readSummary() string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range t.reads {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for _, e := range all {
		parts = append(parts, fmt.Sprintf("%s %d", e.k, e.v))
	}
	return strings.Join(parts, ", ")
}

// limiterBound is how long the client's own rate limits make the writes
// counted take at least: controller-runtime makes one REST client per
// resource, each with its own token bucket of qps and burst, so the
// busiest bucket bounds the run.
func (t *tally) limiterBound(qps, burst int) (time.Duration, string) {
	var worst time.Duration
	var which string
	for r, n := range t.byResource {
		d := time.Duration(float64(max(n-burst, 0)) / float64(qps) * float64(time.Second))
		if d > worst {
			worst, which = d, fmt.Sprintf("%d writes of %s", n, r)
		}
	}
	return worst, which
}

// duplicates is the number of Secrets written more often than want.
func (t *tally) duplicates(want int) int {
	n := 0
	for _, c := range t.secretWrites {
		if c > want {
			n++
		}
	}
	return n
}
