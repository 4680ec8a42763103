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
}

// sources implements SourceAdminService.
type sources struct {
	adminv1.UnimplementedSourceAdminServiceServer
	list []SourceInfo
}

func (s *sources) ListSources(context.Context, *adminv1.ListSourcesRequest) (*adminv1.ListSourcesResponse, error) {
	resp := &adminv1.ListSourcesResponse{}
	for _, src := range s.list {
		st := "serving"
		if src.ID == "" {
			st = "not_configured"
		}
		resp.Sources = append(resp.Sources, &adminv1.Source{Service: src.Service, SourceId: src.ID, Timeout: durationpb.New(src.Timeout), Status: st})
	}
	return resp, nil
}
