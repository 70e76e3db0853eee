using System.CommandLine;
using SkTuning.Gpu.Data;

namespace SkTuning.Gpu.Cli;

/// <summary>The options that choose a task and its data: a named task, or --task custom with files and columns.</summary>
internal sealed class DataOptions
{
    private readonly Option<string> _task = new("--task") { Description = "sst2, cola, mrpc, rte, stsb, wnut17, wikigold, sms-spam or custom", DefaultValueFactory = _ => "sst2" };
    private readonly Option<string?> _data = new("--data") { Description = "data folder (default ../shared/data)" };
    private readonly Option<string?> _train = new("--train-file") { Description = "custom task: training file (.tsv, .csv, .jsonl, .conll)" };
    private readonly Option<string?> _dev = new("--dev-file") { Description = "custom task: dev file (default: a seeded 10% split of train)" };
    private readonly Option<string> _textColumn = new("--text-column") { Description = "custom task: text column", DefaultValueFactory = _ => "text" };
    private readonly Option<string?> _pairColumn = new("--pair-column") { Description = "custom task: second-sentence column" };
    private readonly Option<string> _labelColumn = new("--label-column") { Description = "custom task: label column", DefaultValueFactory = _ => "label" };
    private readonly Option<string> _kind = new("--kind") { Description = "custom task: classification, regression or token-classification", DefaultValueFactory = _ => "classification" };
    private readonly Option<bool> _noHeader = new("--no-header") { Description = "custom task: delimited files have no header row (columns by index)" };

    public static DataOptions Create() => new();

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { _task, _data, _train, _dev, _textColumn, _pairColumn, _labelColumn, _kind, _noHeader }) command.Options.Add(o);
    }

    public (TaskSpec Task, TaskData Data, CustomTaskOptions? Custom) Load(ParseResult parse)
    {
        var name = parse.GetValue(_task)!;
        TaskSpec task;
        if (name == "custom")
        {
            var train = parse.GetValue(_train) ?? throw new SkTuningException("--task custom needs --train-file");
            var options = new CustomTaskOptions
            {
                TrainFile = train,
                DevFile = parse.GetValue(_dev),
                TextColumn = parse.GetValue(_textColumn)!,
                PairColumn = parse.GetValue(_pairColumn),
                LabelColumn = parse.GetValue(_labelColumn)!,
                HasHeader = !parse.GetValue(_noHeader),
                Kind = parse.GetValue(_kind) switch
                {
                    "regression" => TaskKind.Regression,
                    "token-classification" => TaskKind.TokenClassification,
                    "classification" => TaskKind.Classification,
                    var k => throw new SkTuningException($"--kind {k}: expected classification, regression or token-classification"),
                },
            };
            task = TaskCatalog.Custom(options);
            return (task, task.Load(Path.GetDirectoryName(Path.GetFullPath(train))!), options);
        }
        if (!TaskCatalog.Names.Contains(name))
            throw new SkTuningException($"--task {name}: unknown; expected {string.Join(", ", TaskCatalog.Names)} or custom");
        task = TaskCatalog.Get(name);
        var root = DataLocator.Resolve(parse.GetValue(_data));
        return (task, task.Load(root), null);
    }
}
