// Checks that every flag the rendered manifests pass to Celer is one the built CLI has: the `--` arguments of each
// Deployment container running `celer serve` (the image's entrypoint; no command of its own) or `celer router` (command
// [celer, router]) are looked up in that command's --help text.
//
// Usage: node check-flags.mjs SERVE_HELP_FILE ROUTER_HELP_FILE MANIFEST... (yaml resolved from the working directory's
// node_modules, as in validate-manifests.mjs). Exits 1 when a flag is unknown or no Celer container was found.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "noop.js"));
const { parseAllDocuments } = await import(pathToFileURL(require.resolve("yaml")).href);

const [serveHelpFile, routerHelpFile, ...manifests] = process.argv.slice(2);
// A help line lists a flag and its aliases as "--name, --alias <value>  description".
const flagsOf = (file) => new Set(readFileSync(file, "utf8").match(/(?<=^\s*(?:-\w+, )?(?:--[\w-]+, )*)--[\w-]+/gm) ?? []);
const known = { serve: flagsOf(serveHelpFile), router: flagsOf(routerHelpFile) };

let unknown = 0;
let containers = 0;
for (const file of manifests) {
  for (const document of parseAllDocuments(readFileSync(file, "utf8"))) {
    const object = document.toJS();
    if (object?.kind !== "Deployment") continue;
    for (const container of object.spec?.template?.spec?.containers ?? []) {
      const command = container.command ?? [];
      const which = command.length === 0 ? "serve" : command.join(" ") === "celer router" ? "router" : null;
      if (which === null) continue;
      containers++;
      for (const arg of (container.args ?? []).map(String).filter((a) => a.startsWith("--"))) {
        const flag = arg.split("=")[0];
        if (!known[which].has(flag)) {
          console.log(`${file}: ${object.metadata.name}/${container.name}: celer ${which} has no flag ${flag}`);
          unknown++;
        }
      }
    }
  }
}
console.log(`check-flags: ${containers} Celer containers, ${unknown} unknown flags`);
process.exit(unknown > 0 || containers === 0 ? 1 : 0);
