using System.CommandLine;
using System.Text;
using System.Text.Json.Nodes;
using Celer.ChatTemplates;
using Celer.Engine;
using Celer.Engine.Execution;

namespace Celer.Cli;

/// <summary>
/// <c>celer chat</c>: an interactive conversation in the terminal. Each line is a user turn; the
/// whole conversation is rendered through the model's chat template and the reply is streamed.
/// An empty line or end of input quits; <c>/reset</c> starts over.
/// </summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model directory (default: the repository's models/celer-tiny-py)." };
        var system = new Option<string?>("--system") { Description = "System prompt." };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "Chat template: a file path or the template text." };
        var sampling = new SamplingOptions();
        var engine = new EngineOptions();
        var command = new Command("chat", "Chat with the model interactively.");
        command.Options.Add(model);
        command.Options.Add(system);
        command.Options.Add(chatTemplate);
        sampling.AddTo(command);
        engine.AddTo(command);

        command.SetAction(async (result, cancellationToken) => await CliRunner.RunAsync(result, async () =>
        {
            var args = engine.ToEngineArgs(result, ModelLocator.Resolve(result.GetValue(model)));
            var loaded = ModelLoader.Load(args, new LoadProgressReporter());
            await using (loaded)
            {
                var tokenizer = loaded.Tokenizer ?? throw new CliException($"{args.Model} has no tokenizer.json: text prompts need one.");
                var source = ServeCommand.ReadChatTemplate(result.GetValue(chatTemplate)) ?? loaded.ChatTemplate
                    ?? throw new CliException("The model has no chat template; pass --chat-template.");
                var template = ChatTemplate.Parse(source);
                // A reply runs to the end of the context unless --max-tokens is given (its default serves generate).
                var samplingParams = sampling.ToSamplingParams(result) with
                {
                    MaxTokens = result.GetResult(sampling.MaxTokens) is { Implicit: false } ? result.GetValue(sampling.MaxTokens) : null,
                };
                var history = new List<(string Role, string Content)>();
                if (result.GetValue(system) is { } systemPrompt)
                    history.Add(("system", systemPrompt));
                var turn = 0;

                await Console.Error.WriteLineAsync("Type a message; an empty line quits, /reset clears the conversation.");
                while (!cancellationToken.IsCancellationRequested)
                {
                    Console.Write("> ");
                    var line = Console.ReadLine();
                    if (string.IsNullOrWhiteSpace(line))
                        break;
                    if (line.Trim() == "/reset")
                    {
                        history.RemoveAll(m => m.Role != "system");
                        continue;
                    }
                    history.Add(("user", line));
                    var prompt = template.Render(Context(history, loaded));
                    var promptIds = tokenizer.Encode(prompt, addSpecialTokens: false);
                    var reply = new StringBuilder();
                    var request = new GenerateRequest($"chat-{turn++}", promptIds, samplingParams);
                    await foreach (var output in loaded.Engine.GenerateAsync(request, cancellationToken))
                    {
                        foreach (var completion in output.Outputs)
                        {
                            Console.Write(completion.TextDelta);
                            reply.Append(completion.TextDelta);
                        }
                    }
                    Console.WriteLine();
                    history.Add(("assistant", reply.ToString()));
                }
            }
            return 0;
        }));
        return command;
    }

    private static JsonObject Context(List<(string Role, string Content)> history, LoadedModel model)
    {
        var messages = new JsonArray();
        foreach (var (role, content) in history)
            messages.Add((JsonNode)new JsonObject { ["role"] = role, ["content"] = content });
        return new JsonObject
        {
            ["messages"] = messages,
            ["add_generation_prompt"] = true,
            ["bos_token"] = model.TokenizerConfig.BosToken,
            ["eos_token"] = model.TokenizerConfig.EosToken,
        };
    }
}
