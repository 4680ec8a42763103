package admin

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// SourceInfo describes a typed service and the adapter behind it; an
// empty ID means no source is configured.
type SourceInfo struct {
	Service, ID string
	Timeout     time.Duration
	// Status, when set, reports the source's live status.
	Status func() SourceStatus
}

// SourceStatus is a source's live status (adapters/resilience computes it).
type SourceStatus struct {
	State       string
	LastSuccess time.Time
	ErrorRatio  float64
	Calls       int
	P50, P99    time.Duration
}

// sources implements SourceAdminService.
type sources struct {
	adminv1.UnimplementedSourceAdminServiceServer
	list func() []SourceInfo
}

func (s *sources) ListSources(context.Context, *adminv1.ListSourcesRequest) (*adminv1.ListSourcesResponse, error) {
	resp := &adminv1.ListSourcesResponse{}
	if s.list == nil {
		return resp, nil
	}
	for _, src := range s.list() {
		out := &adminv1.Source{Service: src.Service, SourceId: src.ID, Timeout: durationpb.New(src.Timeout), Status: "ok"}
		switch {
		case src.ID == "":
			out.Status = "not_configured"
		case src.Status != nil:
			st := src.Status()
			out.Status, out.LastSuccess, out.ErrorRatio, out.Calls = st.State, ts(st.LastSuccess), st.ErrorRatio, int32(st.Calls)
			out.LatencyP50, out.LatencyP99 = durationpb.New(st.P50), durationpb.New(st.P99)
		}
		resp.Sources = append(resp.Sources, out)
	}
	return resp, nil
}
