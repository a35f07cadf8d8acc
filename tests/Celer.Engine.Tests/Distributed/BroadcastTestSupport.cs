namespace Celer.Engine.Tests.Distributed;

/// <summary>What the broadcast test classes share: their collection, the test's cancellation token, and threads of
/// their own for readers and writers, as the executor's and workers' loops will have (a spinning wait must not hold a
/// thread-pool thread the test's other awaits need).</summary>
internal static class BroadcastTestSupport
{
    /// <summary>The broadcast test classes run one at a time: they count the queue files of this process (which another
    /// class's queue would upset), and their timing checks should not compete with each other's spinning threads.</summary>
    public const string Collection = "shm broadcast";

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static Task<T> OnOwnThread<T>(Func<T> body) => Task.Factory.StartNew(body, Ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    public static Task OnOwnThread(Action body) => Task.Factory.StartNew(body, Ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);
}
