package scheduler_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"testing"

	"github.com/dpsbatch/dpsbatch/scheduler"
)

// The REST backend's partitions carry their nodes' features and the
// accounts and QoS they take (nil for ALL), and their nodes' GPUs, as the
// CLI backend's do.
func TestRESTPartitionsSettings(t *testing.T) {
	openapi, err := os.ReadFile("slurmrest/testdata/openapi.200.json")
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]string{
		"/openapi/v3": string(openapi),
		"/slurm/v0.0.38/partitions": `{"errors":[],"partitions":[{"name":"gpu","state":"UP","nodes":"g[1-2]",
			"allowed_accounts":"physics,science","allowed_qos":"ALL","max_time_limit":-1,"maximum_nodes_per_job":-1}]}`,
		"/slurm/v0.0.38/nodes": `{"errors":[],"nodes":[
			{"name":"g1","cpus":4,"real_memory":1000,"partitions":["gpu"],"features":"ib,a100","gres":"gpu:a100:4"},
			{"name":"g2","cpus":4,"real_memory":1000,"partitions":["gpu"],"features":"ib"}]}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers[r.URL.Path]
		if !ok {
			t.Errorf("unexpected request %s", r.URL.Path)
			w.WriteHeader(404)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(a))
	}))
	t.Cleanup(srv.Close)
	t.Setenv("TEST_SLURM_JWT", "x.y.z")
	r, err := scheduler.NewREST(scheduler.RESTOptions{URL: srv.URL, TokenEnv: "TEST_SLURM_JWT", User: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	lives, err := r.Partitions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(lives) != 1 || !reflect.DeepEqual(lives[0].Features, []string{"a100", "ib"}) ||
		!reflect.DeepEqual(lives[0].AllowedAccounts, []string{"physics", "science"}) || lives[0].AllowedQoS != nil ||
		!reflect.DeepEqual(lives[0].GPUs, map[string]int{"g1": 4}) {
		t.Errorf("partitions %+v", lives)
	}
}
