using Celer.Engine.Execution;
using Celer.TestSupport;

namespace Celer.Engine.Tests.Execution;

/// <summary>The loading progress the CLI draws ends at 100 %, from a checkpoint and from dummy weights alike.</summary>
public sealed class ModelLoadProgressTests
{
    private sealed class Recorder : IProgress<ModelLoadProgress>
    {
        public List<ModelLoadProgress> Reports { get; } = [];

        public void Report(ModelLoadProgress value) => Reports.Add(value);
    }

    [Theory]
    [InlineData("auto")]
    [InlineData("dummy")]
    public void The_last_report_is_complete(string loadFormat)
    {
        var recorder = new Recorder();
        using (ModelLoader.LoadOffline(new EngineArgs { Model = RepoPaths.DefaultModel, LoadFormat = loadFormat }, recorder).Engine)
        {
        }

        Assert.True(recorder.Reports.Count > 1);
        ModelLoadProgress last = recorder.Reports[^1];
        Assert.True(last.TensorsLoaded > 0);
        Assert.Equal(last.TensorsLoaded, last.TotalTensors);
        Assert.Equal(last.BytesLoaded, last.TotalBytes);
        Assert.Equal(recorder.Reports[^2].TensorsLoaded, last.TensorsLoaded);
    }
}
