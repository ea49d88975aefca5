// Command kstatus-check prints the health that kstatus computes for Kubernetes objects: the
// library Flux and Helm 4 judge custom resources with. It evaluates each object with both
// sigs.k8s.io/cli-utils and Flux's fork github.com/fluxcd/cli-utils (the one Helm 4 and Flux
// link), so a test sees what either would report.
//
// Input on stdin: one object as JSON, or a List of them (kubectl get -o json).
// Output: one JSON line per object, for example
//
//	{"name":"a","generation":2,"observedGeneration":2,
//	 "sigs.k8s.io/cli-utils":{"status":"Current","message":"Resource is current"},
//	 "github.com/fluxcd/cli-utils":{"status":"Current","message":"Resource is current"}}
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	fluxstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// verdict is one library's reading of an object.
type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	showVersion := flag.Bool("version", false, "print the linked cli-utils versions and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(linkedVersions())
		return
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus-check:", err)
		os.Exit(1)
	}
}

// linkedVersions names the two kstatus modules at the versions this binary was built with.
func linkedVersions() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var found []string
	for _, dep := range info.Deps {
		if dep.Path == "sigs.k8s.io/cli-utils" || dep.Path == "github.com/fluxcd/cli-utils" {
			found = append(found, dep.Path+" "+dep.Version)
		}
	}
	return strings.Join(found, " ")
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	var object unstructured.Unstructured
	// UnmarshalJSON keeps integers as int64, which kstatus' generation check needs.
	if err := object.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("reading the object: %w", err)
	}
	objects := []unstructured.Unstructured{object}
	if object.IsList() {
		list, err := object.ToList()
		if err != nil {
			return err
		}
		objects = list.Items
	}
	encoder := json.NewEncoder(out)
	for i := range objects {
		line, err := evaluate(&objects[i])
		if err != nil {
			return err
		}
		if err := encoder.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

// evaluate computes both libraries' verdicts for one object.
func evaluate(object *unstructured.Unstructured) (map[string]any, error) {
	upstream, err := status.Compute(object)
	if err != nil {
		return nil, fmt.Errorf("%s: sigs.k8s.io/cli-utils: %w", object.GetName(), err)
	}
	flux, err := fluxstatus.Compute(object)
	if err != nil {
		return nil, fmt.Errorf("%s: github.com/fluxcd/cli-utils: %w", object.GetName(), err)
	}
	line := map[string]any{
		"name":                        object.GetName(),
		"generation":                  object.GetGeneration(),
		"sigs.k8s.io/cli-utils":       verdict{string(upstream.Status), upstream.Message},
		"github.com/fluxcd/cli-utils": verdict{string(flux.Status), flux.Message},
	}
	observed, found, err := unstructured.NestedInt64(object.Object, "status", "observedGeneration")
	if err == nil && found {
		line["observedGeneration"] = observed
	}
	return line, nil
}
