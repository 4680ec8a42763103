package admin

import (
	"context"

	"github.com/relais-broker/relais/broker/anomaly"
	"github.com/relais-broker/relais/broker/registry"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// AnomalyLister lists the anomalies raised (anomaly.Detector), oldest
// first; consumer, when not empty, keeps that consumer's.
type AnomalyLister interface {
	Anomalies(consumer string) []anomaly.Anomaly
}

// anomalies implements AnomalyAdminService.
type anomalies struct {
	adminv1.UnimplementedAnomalyAdminServiceServer
	list AnomalyLister
}

func (a *anomalies) ListAnomalies(_ context.Context, req *adminv1.ListAnomaliesRequest) (*adminv1.ListAnomaliesResponse, error) {
	resp := &adminv1.ListAnomaliesResponse{}
	for _, x := range a.list.Anomalies(req.GetConsumerSiret()) {
		resp.Anomalies = append(resp.Anomalies, &adminv1.Anomaly{
			ConsumerSiret: x.Consumer, Service: x.Service, Kind: x.Kind, Trigger: x.Trigger,
			WindowStart: ts(x.WindowStart), WindowEnd: ts(x.WindowEnd),
			Calls: int32(x.Calls), NotFound: int32(x.NotFound), NotFoundRatio: x.NotFoundRatio, DistinctSubjects: int32(x.DistinctSubjects),
			Thresholds: &adminv1.AnomalyThresholds{
				MinSample: int32(x.Thresholds.MinSample), MaxNotFoundRatio: x.Thresholds.MaxNotFoundRatio,
				MaxDistinctSubjects: int32(x.Thresholds.MaxDistinctSubjects), ExpectedDailyVolume: int32(x.Thresholds.ExpectedDailyVolume),
				VolumeLimit: int32(x.Thresholds.VolumeLimit),
			},
			Action: x.Action, ActionError: x.ActionError,
		})
	}
	return resp, nil
}

// anomalyPolicy maps a grant's anomaly policy from the admin API; the
// registry validates it with the rest of the grant.
func anomalyPolicy(p *adminv1.AnomalyPolicy) registry.AnomalyPolicy {
	return registry.AnomalyPolicy{MaxNotFoundRatio: p.GetMaxNotFoundRatio(), MaxDistinctSubjects: int(p.GetMaxDistinctSubjects()), Action: p.GetAction()}
}

// anomalyPolicyPB maps a grant's anomaly policy to the admin API; the
// zero policy (defaults) is left unset.
func anomalyPolicyPB(p registry.AnomalyPolicy) *adminv1.AnomalyPolicy {
	if p == (registry.AnomalyPolicy{}) {
		return nil
	}
	return &adminv1.AnomalyPolicy{MaxNotFoundRatio: p.MaxNotFoundRatio, MaxDistinctSubjects: int32(p.MaxDistinctSubjects), Action: p.Action}
}
