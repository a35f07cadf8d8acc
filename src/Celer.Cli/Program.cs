using Celer.Cli;

return await CelerCommandLine.CreateRoot().Parse(args).InvokeAsync();
