// Package permissions builds the NATS subject permissions of each party
// of a deployment: a callout agent (confined to its own callout and agent
// id), a read-only operator, a management client and the engine. The
// subjects come from the wire contract (package events) and the names the
// agent SDK uses, so they cannot drift from the code; `engine
// permissions` prints them for a nats-server configuration file (Conf) or
// a user JWT (JSON), and the security tests run a real server configured
// from exactly that output.
//
// The JetStream API is assumed at its default prefix ($JS.API), in the
// same account as the deployment.
package permissions

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// Set is what one user may do: the subjects it may publish to and
// subscribe to, and whether it may answer the requests it receives (the
// server's allow_responses: one answer each, to the request's reply
// subject, within ResponseTTL).
type Set struct {
	Role      string // what the set is for, for the printed comment
	Publish   []string
	Subscribe []string
	Responses bool
}

// ResponseTTL is how long a Set with Responses may answer a request: the
// server's default for allow_responses.
const ResponseTTL = 2 * time.Minute

// Deployment names the stream and subject prefix the engine serves.
type Deployment struct {
	Stream  string // default events.DefaultStream
	Prefix  string // default events.DefaultPrefix
	Archive string // the archive stream (engine serve --archive); default jetstream.ArchiveName(Stream)
}

func (d Deployment) withDefaults() (Deployment, error) {
	if d.Stream == "" {
		d.Stream = events.DefaultStream
	}
	if d.Prefix == "" {
		d.Prefix = events.DefaultPrefix
	}
	if d.Archive == "" {
		d.Archive = jetstream.ArchiveName(d.Stream)
	}
	if err := events.ValidStreamName(d.Stream); err != nil {
		return d, err
	}
	if err := events.ValidStreamName(d.Archive); err != nil {
		return d, fmt.Errorf("archive: %w", err)
	}
	return d, events.ValidPrefix(d.Prefix)
}

const (
	jsAPI = "$JS.API."
	inbox = "_INBOX.>" // the default inbox of trusted parties
)

// Agent is the set of agent agentID of callout calloutKey, reading
// through the durable consumer durable if it is not empty (a live or
// replay agent otherwise). It may create, update, read and delete its own
// consumer on its own callout's filter subject and no other (a durable
// agent also the consumer of its agent id, for the snapshot of a resync,
// and it records its caught-up time in its durable's metadata), ack its
// own messages (durable), hear its own callout's filter events as the
// stream stores them (events.Subjects.LiveFilters: a live or replay agent
// reads there once it is synced, without a consumer), read the last
// message of its own callout's subject (to find the end of a replay
// snapshot after a reset, and to learn the log's horizon), announce itself,
// answer adds, pings and classify calls in its own name (it hears the
// classify calls of its own subject only), and receive on its own inbox
// (events.Subjects.AgentInbox: the connection must use it as its inbox
// prefix, as callout-agent does). It may not read the stream otherwise,
// publish on it, call the management API, or hear anyone else's replies.
func Agent(d Deployment, calloutKey, agentID, durable string) (Set, error) {
	d, err := d.withDefaults()
	if err != nil {
		return Set{}, err
	}
	key, err := events.ParseKey(calloutKey)
	if err != nil {
		return Set{}, fmt.Errorf("callout key: %w", err)
	}
	if err := events.ValidName("agent id", agentID); err != nil {
		return Set{}, err
	}
	names := []string{events.AgentConsumer(key, agentID)}
	role := fmt.Sprintf("callout agent %s of callout %s", agentID, key)
	if durable != "" {
		if err := events.ValidName("durable name", durable); err != nil {
			return Set{}, err
		}
		names = append([]string{durable}, names...)
		role += ", durable " + durable
	}
	s := events.Subjects{Prefix: d.Prefix}
	filters := s.CalloutFilters(key)
	var consumers []string
	for _, name := range names {
		consumers = append(consumers,
			jsAPI+"CONSUMER.CREATE."+d.Stream+"."+name+"."+filters,
			jsAPI+"CONSUMER.INFO."+d.Stream+"."+name,
			jsAPI+"CONSUMER.DELETE."+d.Stream+"."+name,
			jsAPI+"CONSUMER.MSG.NEXT."+d.Stream+"."+name)
	}
	set := Set{
		Role: role,
		Publish: append(consumers,
			jsAPI+"DIRECT.GET."+d.Stream+"."+filters,
			s.Agent(key, agentID),
			s.AgentPing(key, agentID),
			s.Result(key, agentID),
		),
		Subscribe: []string{
			s.LiveFilters(key),
			s.AgentInbox(key, agentID) + ".>",
			s.AgentPing(key, agentID),
			s.AgentInstancePing(key, agentID, "*"),
			s.AgentProbe(),
			s.Classify(key, agentID),
		},
		Responses: true, // answers to pings and classify calls
	}
	if durable != "" {
		set.Publish = append(set.Publish, "$JS.ACK."+d.Stream+"."+durable+".>")
	}
	return set, nil
}

// Operator is a read-only operator's set: the list and get endpoints, the
// log and its archive read with direct gets (as `engine events` reads
// them: no consumer, so nothing on the server changes) and as it is written (core
// subscriptions to the stream's subjects), and service discovery (`nats
// micro ls`). No write endpoint, no consumer.
func Operator(d Deployment) (Set, error) {
	d, err := d.withDefaults()
	if err != nil {
		return Set{}, err
	}
	s := events.Subjects{Prefix: d.Prefix}
	pub := []string{
		s.API(engine.EndpointCalloutList), s.API(engine.EndpointCalloutGet), s.API(engine.EndpointFilterList), s.API(engine.EndpointFilterGet),
		s.API(engine.EndpointSessionList), s.API(engine.EndpointClassify),
		jsAPI + "DIRECT.GET." + d.Stream, jsAPI + "DIRECT.GET." + d.Stream + ".>",
		jsAPI + "DIRECT.GET." + d.Archive, jsAPI + "DIRECT.GET." + d.Archive + ".>",
	}
	return Set{
		Role:      "read-only operator (lists, events)",
		Publish:   append(pub, discovery...),
		Subscribe: append([]string{inbox}, s.Stream()...),
	}, nil
}

// discovery is what `nats micro ls` and friends publish.
var discovery = []string{"$SRV.PING", "$SRV.PING.>", "$SRV.INFO", "$SRV.INFO.>", "$SRV.STATS", "$SRV.STATS.>"}

// Manager is a management client's set: every API endpoint, heartbeats of
// the dynamic sessions it holds (any session: ids are not known ahead),
// and service discovery.
func Manager(d Deployment) (Set, error) {
	d, err := d.withDefaults()
	if err != nil {
		return Set{}, err
	}
	s := events.Subjects{Prefix: d.Prefix}
	return Set{
		Role:      "management client (every API endpoint)",
		Publish:   append([]string{s.API(">"), s.AllHeartbeats()}, discovery...),
		Subscribe: []string{inbox},
	}, nil
}

// Engine is the engine's own set: the JetStream API (it creates and
// updates the stream and reads it whole), writing the stream's subjects,
// keeping its high-water mark in the engine.MarkBucket KV bucket (on an
// external server), serving the API and service discovery, hearing every
// agent's announcements and results and every session's heartbeats,
// probing and pinging agents, asking any agent to classify, and answering
// requesters (on _INBOX, or any inbox within ResponseTTL).
func Engine(d Deployment) (Set, error) {
	d, err := d.withDefaults()
	if err != nil {
		return Set{}, err
	}
	s := events.Subjects{Prefix: d.Prefix}
	return Set{
		Role: "engine",
		Publish: append(append([]string{jsAPI + ">"}, s.Stream()...),
			"$KV."+engine.MarkBucket+".>", s.AgentProbe(), s.AllAgentInstancePings(), s.AllClassify(), inbox),
		Subscribe: []string{inbox, s.API(">"), s.AllAgents(), s.AllResults(), s.AllHeartbeats(), "$SRV.>"},
		Responses: true,
	}, nil
}

// Conf is the set in nats-server configuration syntax: a `permissions`
// entry to put in a user's map, with a comment line saying what it is
// for.
func (s Set) Conf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\npermissions: {\n", s.Role)
	list := func(kind string, subjects []string) {
		fmt.Fprintf(&b, "  %s: {\n    allow: [\n", kind)
		for _, subj := range subjects {
			fmt.Fprintf(&b, "      %q\n", subj)
		}
		b.WriteString("    ]\n  }\n")
	}
	list("publish", s.Publish)
	list("subscribe", s.Subscribe)
	if s.Responses {
		fmt.Fprintf(&b, "  allow_responses: { max: 1, expires: %q }\n", ResponseTTL.String())
	}
	b.WriteString("}\n")
	return b.String()
}

// jwtPermissions has the shape of the permissions in a NATS user JWT's
// claims (github.com/nats-io/jwt/v2 Permissions): "pub", "sub", "resp".
type jwtPermissions struct {
	Pub  jwtSubjects  `json:"pub"`
	Sub  jwtSubjects  `json:"sub"`
	Resp *jwtResponse `json:"resp,omitempty"`
}

type jwtSubjects struct {
	Allow []string `json:"allow"`
}

type jwtResponse struct {
	MaxMsgs int           `json:"max"`
	Expires time.Duration `json:"ttl"`
}

// JSON is the set as the permissions of a user JWT's claims, for
// JWT-based (operator mode) setups: what `nsc edit user --allow-pub ...
// --allow-sub ... --allow-pub-response` produces.
func (s Set) JSON() ([]byte, error) {
	p := jwtPermissions{Pub: jwtSubjects{s.Publish}, Sub: jwtSubjects{s.Subscribe}}
	if s.Responses {
		p.Resp = &jwtResponse{MaxMsgs: 1, Expires: ResponseTTL}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // subjects have '>' in them
	enc.SetIndent("", "  ")
	err := enc.Encode(p)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), err
}
