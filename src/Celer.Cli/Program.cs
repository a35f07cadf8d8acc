using System.CommandLine;
using Celer.Cli;

// System.CommandLine's own SIGINT/SIGTERM handling is off: it would end `celer serve` with exit code 143 as soon as
// the signal came, before ASP.NET's console lifetime could drain in-flight requests (a Kubernetes pod's SIGTERM).
// The server's host owns those signals once it has started; before that, and in the other commands, a signal ends
// the process as usual.
return await CelerCommandLine.CreateRoot().Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
