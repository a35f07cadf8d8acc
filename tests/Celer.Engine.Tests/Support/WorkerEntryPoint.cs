using System.Runtime.CompilerServices;
using Celer.Engine.Distributed;

namespace Celer.Engine.Tests.Support;

/// <summary>
/// Tensor-parallel engines in the tests (Celer.Engine.Tests and, linked, Celer.Backends.Cuda.Tests) start their worker processes as <c>dotnet Celer.Engine.Tests.dll worker …</c>
/// (the running program started again, as <c>celer serve</c> starts <c>celer worker</c>): a module initializer runs
/// before the test runner's entry point and serves as the worker instead.
/// </summary>
internal static class WorkerEntryPoint
{
    [ModuleInitializer]
    internal static void RunWhenStartedAsWorker()
    {
        if (TensorParallelWorker.RunIfWorker(Environment.GetCommandLineArgs()[1..]) is int exitCode)
        {
            Environment.Exit(exitCode);
        }
    }
}
