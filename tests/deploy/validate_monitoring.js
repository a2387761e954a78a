// Validates Prometheus Operator objects (ServiceMonitor, PrometheusRule, ...)
// with the @kubernetes-models/prometheus-operator models.
// Usage: node validate_monitoring.js <node prefix dir> <input.json>
// input.json: [{"label": "...", "doc": {...}}, ...]; prints one JSON line per
// item: {"label", "ok", "error"}. The YAML is parsed by the Python side, so no
// YAML package is needed here.
"use strict";
const fs = require("fs");
const path = require("path");

const [prefix, input] = process.argv.slice(2);
const v1 = require(path.join(prefix, "node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1"));
// Top-level kinds only: v1 also exports nested types (Rule, Endpoint, ...).
const KINDS = ["ServiceMonitor", "PodMonitor", "Probe", "PrometheusRule", "Prometheus", "Alertmanager", "ThanosRuler"];

for (const { label, doc } of JSON.parse(fs.readFileSync(input, "utf8"))) {
  let error = null;
  const Model = doc && doc.apiVersion === "monitoring.coreos.com/v1" && KINDS.includes(doc.kind) ? v1[doc.kind] : undefined;
  if (!Model) {
    error = `no monitoring.coreos.com/v1 model for ${doc && doc.apiVersion}/${doc && doc.kind}`;
  } else {
    try {
      new Model(doc).validate();
    } catch (e) {
      error = e.message;
    }
  }
  console.log(JSON.stringify({ label, ok: error === null, error }));
}
