package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// ErrNoMessage is returned by LeaderGet when the stream holds no message
// at or after the sequence asked for.
var ErrNoMessage = errors.New("jetstream: no message")

// LeaderGet asks the stream's leader for the first message at or after
// seq (on any subject), through $JS.API.STREAM.MSG.GET, and returns its
// sequence and subject.
//
// nats.go reads messages with direct gets whenever a stream allows them,
// and any replica answers a direct get, also one that lags behind the
// leader: "no message after seq" from a lagging replica does not mean the
// log has none. A reader that decides on that answer (skip to the end, or
// declare the log short) must ask the leader.
func LeaderGet(ctx context.Context, js natsjs.JetStream, stream string, seq uint64) (uint64, string, error) {
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
	}{seq, ">"})
	if err != nil {
		return 0, "", err
	}
	m, err := js.Conn().RequestWithContext(ctx, APISubject(js, "STREAM.MSG.GET."+stream), req)
	if err != nil {
		return 0, "", fmt.Errorf("jetstream: get message %d of %s: %w", seq, stream, err)
	}
	var resp struct {
		Message *struct {
			Subject  string `json:"subject"`
			Sequence uint64 `json:"seq"`
		} `json:"message"`
		Error *natsjs.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, "", fmt.Errorf("jetstream: get message %d of %s: %w", seq, stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == natsjs.JSErrCodeMessageNotFound:
		return 0, "", ErrNoMessage
	case resp.Error != nil:
		return 0, "", fmt.Errorf("jetstream: get message %d of %s: %w", seq, stream, resp.Error)
	case resp.Message == nil:
		return 0, "", fmt.Errorf("jetstream: get message %d of %s: empty answer", seq, stream)
	}
	return resp.Message.Sequence, resp.Message.Subject, nil
}

// APISubject is the JetStream API subject s ("STREAM.MSG.GET.WFP", ...)
// under js's API prefix or domain, as nats.go forms it.
func APISubject(js natsjs.JetStream, s string) string {
	o := js.Options()
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "." + s
	case o.Domain != "":
		return "$JS." + o.Domain + ".API." + s
	}
	return natsjs.DefaultAPIPrefix + s
}
