using System.Diagnostics;
using System.Globalization;

namespace Celer.Cli.Bench;

/// <summary>
/// CPU time (user + system) spent by the processes of a benchmark: this one (the load generator), the router's and the
/// backends' (given by id), and, on Linux, the whole machine, so that what other processes took from a shared machine
/// during a phase shows in the report instead of silently slowing it.
/// </summary>
internal sealed class CpuAccounting : IDisposable
{
    /// <summary>
    /// /proc/stat counts in USER_HZ, which the kernel fixes at 100 for user space on every architecture
    /// (<c>man 5 proc</c>: "units of USER_HZ (1/100ths of a second on most architectures").
    /// </summary>
    private const double ProcStatTicksPerSecond = 100;

    private readonly Process _self = Process.GetCurrentProcess();
    private readonly Process[] _router;
    private readonly Process[] _backends;

    /// <exception cref="CliException">A process id names no running process.</exception>
    public CpuAccounting(IEnumerable<int> routerPids, IEnumerable<int> backendPids)
    {
        _router = [.. routerPids.Select(Open)];
        _backends = [.. backendPids.Select(Open)];
    }

    public bool MeasuresRouter => _router.Length > 0;
    public bool MeasuresBackends => _backends.Length > 0;

    /// <summary>Cumulative CPU seconds at one moment; the difference of two is what a phase used.</summary>
    public readonly record struct Sample(double LoadGenerator, double Router, double Backends, double? Machine)
    {
        public static Sample operator -(Sample after, Sample before) =>
            new(after.LoadGenerator - before.LoadGenerator, after.Router - before.Router, after.Backends - before.Backends,
                after.Machine - before.Machine);
    }

    public Sample Read() => new(Seconds(_self), _router.Sum(Seconds), _backends.Sum(Seconds), MachineBusySeconds());

    public void Dispose()
    {
        _self.Dispose();
        foreach (var process in _router.Concat(_backends))
            process.Dispose();
    }

    private static Process Open(int pid)
    {
        try
        {
            return Process.GetProcessById(pid);
        }
        catch (ArgumentException)
        {
            throw new CliException($"No running process has id {pid}.");
        }
    }

    /// <exception cref="CliException">The process exited (a router or backend that crashed ends the benchmark with its id).</exception>
    private static double Seconds(Process process)
    {
        try
        {
            process.Refresh();
            return process.TotalProcessorTime.TotalSeconds;
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            throw new CliException($"Process {process.Id} exited during the benchmark.");
        }
    }

    /// <summary>The machine's busy CPU seconds so far over all cores (the first line of /proc/stat less idle and iowait); null off Linux.</summary>
    private static double? MachineBusySeconds()
    {
        const string path = "/proc/stat";
        if (!File.Exists(path))
            return null;
        using var reader = new StreamReader(path);
        var fields = reader.ReadLine()!.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // cpu user nice system idle iowait irq softirq steal guest guest_nice; guest time is already counted in user.
        double busy = 0;
        foreach (var i in new[] { 1, 2, 3, 6, 7, 8 })
            busy += long.Parse(fields[i], CultureInfo.InvariantCulture);
        return busy / ProcStatTicksPerSecond;
    }
}
