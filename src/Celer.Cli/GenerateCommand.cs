using System.CommandLine;
using Celer.Engine;
using Celer.Engine.Execution;

namespace Celer.Cli;

/// <summary><c>celer generate --model DIR --prompt TEXT</c>: print the continuation of one prompt as it is generated.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model directory (default: the repository's models/celer-tiny-py)." };
        var prompt = new Option<string>("--prompt") { Description = "Prompt text.", Required = true };
        var sampling = new SamplingOptions();
        var engine = new EngineOptions();
        var command = new Command("generate", "Generate a continuation of a prompt (greedy by default).");
        command.Options.Add(model);
        command.Options.Add(prompt);
        sampling.AddTo(command);
        engine.AddTo(command);

        command.SetAction(async (result, cancellationToken) => await CliRunner.RunAsync(result, async () =>
        {
            var args = engine.ToEngineArgs(result, ModelLocator.Resolve(result.GetValue(model)));
            var loaded = ModelLoader.Load(args, new LoadProgressReporter());
            await using (loaded)
            {
                var tokenizer = loaded.Tokenizer ?? throw new CliException($"{args.Model} has no tokenizer.json: text prompts need one.");
                var samplingParams = sampling.ToSamplingParams(result);
                var promptIds = tokenizer.Encode(result.GetValue(prompt)!);
                try
                {
                    samplingParams.Validate(loaded.Engine.VocabSize, args.MaxLogprobs);
                }
                catch (SamplingParamsException e)
                {
                    throw new CliException(e.Message);
                }
                var request = new GenerateRequest("generate-0", promptIds, samplingParams);
                var output = result.InvocationConfiguration.Output;
                await foreach (var delta in loaded.Engine.GenerateAsync(request, cancellationToken))
                {
                    foreach (var completion in delta.Outputs)
                        await output.WriteAsync(completion.TextDelta);
                    await output.FlushAsync(cancellationToken);
                }
                await output.WriteLineAsync();
            }
            return 0;
        }));
        return command;
    }
}
