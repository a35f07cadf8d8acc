using System.CommandLine;
using Celer.Models.Quantization;

namespace Celer.Cli;

/// <summary>
/// <c>celer quantize --model DIR --method fp8|int8|gptq-rtn|awq-rtn --output DIR</c>: a quantized copy of an unquantized
/// checkpoint, round to nearest without calibration, in the format the method's tools write (compressed-tensors FP8
/// or W8A16, GPTQ, AWQ), so any engine that serves those formats serves it (<see cref="CheckpointQuantizer"/>).
/// </summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model directory (default: the repository's models/celer-tiny-py)." };
        var method = new Option<string>("--method")
        {
            Description = "fp8: compressed-tensors FP8, one scale per output row, inputs dynamic per token; int8: compressed-tensors W8A16, "
                + "one symmetric scale per output row; gptq-rtn: GPTQ 4-bit, symmetric; awq-rtn: AWQ 4-bit GEMM layout with zero points.",
            Required = true,
        };
        method.AcceptOnlyFromAmong("fp8", "int8", "gptq-rtn", "awq-rtn");
        var output = new Option<string>("--output", "-o") { Description = "Directory the quantized checkpoint is written to.", Required = true };
        var groupSize = new Option<int>("--group-size")
        {
            Description = "Input columns per scale for gptq-rtn and awq-rtn (-1: one per output row, gptq-rtn only).",
            DefaultValueFactory = _ => 128,
        };
        var command = new Command("quantize", "Write a quantized copy of an unquantized checkpoint (round to nearest, no calibration data).");
        command.Options.Add(model);
        command.Options.Add(method);
        command.Options.Add(output);
        command.Options.Add(groupSize);

        command.SetAction((result, _) => CliRunner.RunAsync(result, async () =>
        {
            string dir = ModelLocator.Resolve(result.GetValue(model));
            string target = result.GetValue(output)!;
            var log = result.InvocationConfiguration.Output;
            int count = CheckpointQuantizer.Run(dir, target, CheckpointQuantizer.ParseMethod(result.GetValue(method)!), result.GetValue(groupSize),
                line => log.WriteLine($"[celer] {line}"));
            await log.WriteLineAsync($"[celer] quantized {count} weights of {dir} ({result.GetValue(method)}) into {target}");
            return 0;
        }));
        return command;
    }
}
