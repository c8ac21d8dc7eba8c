"""The paper's clinical tasks, the embedded default data sets, and the command lines that join
models/ and minipeft/."""
