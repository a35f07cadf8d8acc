// Validates Kubernetes manifests (multi-document YAML files) against the API's JSON schemas, offline: the schemas come
// compiled inside the npm packages kubernetes-models (the core API), @kubernetes-models/keda and
// @kubernetes-models/prometheus-operator (the CRDs the chart can render). Checked: each object's kind is known, required
// fields, types, formats and enums. Not checked: unknown fields (the generated schemas allow them), which only an API
// server's strict field validation refuses.
//
// Usage: node validate-manifests.mjs FILE...   (run with NODE_PATH unset; the packages resolve from the working
// directory's node_modules, see tools/deploy/lint.sh). Prints one line per object; exits 1 if any is invalid.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import path from "node:path";

// Resolved from the working directory, where lint.sh installed the packages, not from this file's folder.
const require = createRequire(path.join(process.cwd(), "noop.js"));
const { parseAllDocuments } = await import(pathToFileURL(require.resolve("yaml")).href);

// The file of each kind's model: the packages export "<group>/<version>/<Kind>" as that path plus ".js", ESM only, so
// the path is built rather than resolved through require.
function modelFile(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const modules = path.join(process.cwd(), "node_modules");
  if (group === "keda.sh") return path.join(modules, "@kubernetes-models/keda/keda.sh", version, `${kind}.js`);
  if (group === "monitoring.coreos.com")
    return path.join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com", version, `${kind}.js`);
  return path.join(modules, "kubernetes-models", group, version, `${kind}.js`);
}

async function loadModel(apiVersion, kind) {
  const file = modelFile(apiVersion, kind);
  if (!/^[A-Za-z0-9.]*$/.test(apiVersion.replace("/", "")) || !/^[A-Za-z0-9]+$/.test(kind) || !existsSync(file)) return null;
  const module = await import(pathToFileURL(file).href);
  return module[kind] ?? null;
}

let failures = 0;
let count = 0;
for (const file of process.argv.slice(2)) {
  const documents = parseAllDocuments(readFileSync(file, "utf8"));
  for (const document of documents) {
    if (document.errors.length > 0) {
      console.log(`${file}: YAML error: ${document.errors[0].message}`);
      failures++;
      continue;
    }
    const object = document.toJS();
    if (object === null || object === undefined) continue;
    count++;
    const where = `${file}: ${object.kind ?? "?"} ${object.metadata?.name ?? "?"}`;
    if (typeof object.apiVersion !== "string" || typeof object.kind !== "string") {
      console.log(`${where}: apiVersion and kind are required`);
      failures++;
      continue;
    }
    const Model = await loadModel(object.apiVersion, object.kind);
    if (Model === null) {
      console.log(`${where}: no schema for ${object.apiVersion} ${object.kind}`);
      failures++;
      continue;
    }
    try {
      new Model(object).validate();
      console.log(`${where}: valid (${object.apiVersion})`);
    } catch (error) {
      console.log(`${where}: INVALID: ${error.message}`);
      failures++;
    }
  }
}
console.log(`validate-manifests: ${count} objects, ${failures} invalid`);
process.exit(failures > 0 || count === 0 ? 1 : 0);
