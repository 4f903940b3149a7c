import streamlit as st

st.title("models")
st.info("Coming soon.")
